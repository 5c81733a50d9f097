//! The ground every other idv crate stands on: sealed archives (`*.idvr`), the keyring that
//! wraps their keys, the metadata database, the blob store and the tamper-evident audit log.
//! Knows nothing about media or HTTP.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod archive;
pub mod audit;
pub mod blob;
pub mod db;
pub mod keyring;
