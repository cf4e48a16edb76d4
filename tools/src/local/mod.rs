//! The local stack: the AWS emulator, the table (and queues) created as template.yaml
//! declares them, and an HTTP server that routes each request to the same handler the
//! Lambda binary uses, with the authorizer in front.

pub mod emulator;
pub mod functions;
pub mod pollers;
pub mod principals;
pub mod provision;
pub mod runtime;
pub mod server;
pub mod settings;
pub mod stack;
pub mod template;
