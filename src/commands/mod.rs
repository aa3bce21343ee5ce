//! The one-shot commands: `once`, `status`, `check`. Each returns its exit status.

pub mod check;
pub mod once;
pub mod status;
