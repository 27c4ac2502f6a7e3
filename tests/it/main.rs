//! The integration tests, as one test binary: a change to the crate relinks one binary, not
//! one per file. Each module is a concern (`receiver`, `bots`, `object_store`...), and a test
//! is named by its module: `cargo nextest run -E 'test(/^receiver::/)'`. Shared set-up is in
//! `common/`.

mod after_call;
mod audio;
mod bad_input;
mod bots;
mod browse;
mod browser;
mod cli;
mod common;
mod deleting;
mod deploy;
mod downloads;
mod export;
mod faults;
mod object_store;
mod participant_events;
mod receiver;
mod replay;
mod security;
mod simulate;
mod titles;
