//! The one-shot commands: `once`, `status`, `check`, and the generated documentation
//! (`completions`, `manpage`). Each returns its exit status.

pub mod check;
pub mod docs;
pub mod once;
pub mod plan;
pub mod status;
