//! What lifeboat backs up and restores into.
pub mod child;
pub mod postgres;
