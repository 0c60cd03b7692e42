//! `docsort-worker samples`: the quickstart's sample PDFs.

use anyhow::Context;
use docsort_worker::offline::samples::write_samples;

use crate::cli::SamplesArgs;

pub fn samples(args: &SamplesArgs) -> anyhow::Result<()> {
    let paths = write_samples(&args.dir)
        .with_context(|| format!("cannot write samples into {}", args.dir.display()))?;
    for path in paths {
        println!("{}", path.display());
    }
    Ok(())
}
