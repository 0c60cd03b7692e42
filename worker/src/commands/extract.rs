//! `docsort-worker extract`: the text and outcome of local PDFs, for
//! debugging a label and for the extraction benchmark.

use anyhow::Context;
use docsort_worker::extract::read;

use crate::cli::ExtractArgs;

pub fn extract(args: &ExtractArgs) -> anyhow::Result<()> {
    if let Some(dir) = &args.save_images {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    for path in &args.files {
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        match read(&bytes, args.max_text_chars as usize, args.fallback) {
            Ok(x) => {
                let image = x.image.as_ref().map_or_else(String::new, |i| {
                    format!(
                        ", page image {} x {} px, {} bytes",
                        i.width,
                        i.height,
                        i.png.len()
                    )
                });
                println!(
                    "== {}: ok, {} pages, {} characters from {}{image}",
                    path.display(),
                    x.pages,
                    x.text_chars(),
                    x.source.as_str(),
                );
                println!("{}", x.text);
                if let (Some(dir), Some(image)) = (&args.save_images, &x.image) {
                    let name = path.file_name().unwrap_or_default().to_string_lossy();
                    let out = dir.join(format!("{name}.png"));
                    std::fs::write(&out, &image.png)
                        .with_context(|| format!("cannot write {}", out.display()))?;
                }
            }
            Err(e) => println!("== {}: failed/{}: {}", path.display(), e.reason(), e),
        }
    }
    Ok(())
}
