//! End-to-end tests on real protocols: moto (S3, SQS, DynamoDB) and the
//! Converse stand-in, with the real SDK clients, producer and worker.
//! One test binary; one module per concern.

mod common;
mod extraction;
mod faults;
mod infra;
mod local;
mod pipeline;
