//! The operator: observes the custom resources, decides with pure functions,
//! applies with a thin IO shell. [`jobs`] builds the Job specs that run the
//! data-plane commands and reads their results back.

pub mod jobs;
