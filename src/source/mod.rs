//! What lifeboat backs up and restores into.
pub mod postgres;
