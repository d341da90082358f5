//! Workspace configuration: loading, validation with positioned errors, and `init`.

mod types;
pub use types::*;
