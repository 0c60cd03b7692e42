//! End-to-end tests on real protocols: moto (S3, SQS, DynamoDB) and the
//! Converse stand-in, with the real SDK clients, producer and worker.
//! One test binary; one module per concern.

#![allow(clippy::print_stdout, clippy::print_stderr, clippy::unwrap_used)] // test tooling reports and panics

mod backfill;
mod batch;
mod budget;
mod common;
mod extraction;
mod faults;
mod head;
mod infra;
mod local;
mod pipeline;
mod scanned;
mod table;
