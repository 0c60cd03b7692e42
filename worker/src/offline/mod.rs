//! Offline classification of local files, no queue and no tables: the
//! folder walk, per-file records and result files ([`files`]), accuracy on a
//! labeled set ([`eval`]), fitting a head for the local model ([`train`], its features kept by
//! [`feature_cache`]) and
//! the quickstart's sample PDFs ([`samples`]).
//! It reuses [`crate::extract`] and [`crate::classify`] as the pool does and
//! must not talk to AWS itself; printing is the commands' job.

pub mod eval;
pub mod feature_cache;
pub mod files;
pub mod samples;
pub mod train;
