//! `docsort-worker extract`: the text and outcome of local PDFs, for
//! debugging a label and for the extraction benchmark.

use anyhow::Context;
use docsort_worker::extract::extract as extract_text;

use crate::cli::ExtractArgs;

pub fn extract(args: &ExtractArgs) -> anyhow::Result<()> {
    for path in &args.files {
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        match extract_text(&bytes, args.max_text_chars as usize) {
            Ok(x) => {
                println!(
                    "== {}: ok, {} pages, {} characters",
                    path.display(),
                    x.pages,
                    x.text_chars()
                );
                println!("{}", x.text);
            }
            Err(e) => println!("== {}: failed/{}: {}", path.display(), e.reason(), e),
        }
    }
    Ok(())
}
