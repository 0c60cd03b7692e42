//! moto in server mode, from the project's virtualenv (`.venv`, installed by
//! `scripts/test`), on a free loopback port. One server per test process: it
//! is started on first use and dies with the process (parent-death signal).

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A running moto server.
#[derive(Debug)]
pub struct Moto {
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
}

/// The moto server of this test process.
pub fn shared() -> &'static Moto {
    static MOTO: OnceLock<Moto> = OnceLock::new();
    MOTO.get_or_init(start)
}

fn server_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("DOCSORT_MOTO_SERVER") {
        return path.into();
    }
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/moto_server");
    assert!(
        path.exists(),
        "moto is not installed at {}: run `scripts/test` (it creates .venv with the pinned moto), \
         or set DOCSORT_MOTO_SERVER to a moto_server binary",
        path.display()
    );
    path
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

fn start() -> Moto {
    let binary = server_binary();
    let port = free_port();
    let (tx, rx) = std::sync::mpsc::channel();
    // The parent-death signal fires when the *thread* that spawned the child
    // ends, so spawn from a thread that lives as long as the process.
    std::thread::Builder::new()
        .name("moto".into())
        .spawn(move || {
            let mut command = Command::new(&binary);
            command
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::null());
            if std::env::var_os("DOCSORT_TEST_MOTO_LOG").is_none() {
                command.stderr(Stdio::null());
            }
            #[cfg(target_os = "linux")]
            unsafe {
                use std::os::unix::process::CommandExt;
                command.pre_exec(|| {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                    Ok(())
                });
            }
            let child = command.spawn();
            let failed = child.is_err();
            let _ = tx.send(
                child
                    .map(|_| ())
                    .map_err(|e| format!("cannot start {}: {e}", binary.display())),
            );
            if !failed {
                loop {
                    std::thread::park();
                }
            }
        })
        .expect("spawn the moto thread");
    rx.recv()
        .expect("moto thread reports")
        .unwrap_or_else(|e| panic!("{e}"));
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "moto did not listen on port {port} within 60 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Moto {
        endpoint: format!("http://127.0.0.1:{port}"),
    }
}
