//! Test tooling for docsort's end-to-end tests: local AWS stand-ins and helpers.
//!
//! - [`moto`]: moto in server mode (S3, SQS, DynamoDB, CloudFormation), started
//!   once per test process on a free loopback port and stopped with it;
//! - [`bedrock`]: the project's own Converse-compatible stand-in, scripted per test;
//! - [`bedrock_batch`]: its control plane's batch inference jobs, reading and writing moto's S3;
//! - [`env`]: per-test AWS resources with unique names, clients, and an in-process worker;
//! - [`scanned`]: image-only (scanned) PDF fixtures, a blank scan and a decompression bomb;
//! - [`wait`]: deadline-bounded polling.

#![allow(clippy::print_stdout, clippy::print_stderr, clippy::unwrap_used)] // test tooling reports and panics

pub mod bedrock;
pub mod bedrock_batch;
pub mod corpus;
pub mod env;
pub mod moto;
pub mod recall;
pub mod scanned;
pub mod scenarios;
pub mod wait;
