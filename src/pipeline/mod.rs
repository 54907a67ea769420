//! The data path: object header, STREAM encryption, the per-object codec.
pub mod codec;
mod encoder;
pub mod header;
pub mod stream;
mod zstd_encoder;
