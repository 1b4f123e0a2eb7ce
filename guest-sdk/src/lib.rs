//! # aos-guest-sdk — write AgentOS drivers as WebAssembly components
//!
//! A driver is a Wasm component that exports the `aos:kernel/driver`
//! interface (see `wit/`): it describes the syscalls it offers and handles one
//! call at a time. This crate carries the bindings, so a driver author needs no
//! direct `wit-bindgen` dependency, and turns typed Rust handlers into
//! syscalls whose argument JSON Schema is generated from the argument type.
//!
//! ```ignore
//! use aos_guest_sdk::prelude::*;
//!
//! /// Arguments of TEXT_STATS.
//! #[derive(Deserialize, JsonSchema)]
//! struct TextStats {
//!     /// The text to analyse.
//!     text: String,
//! }
//!
//! fn text_stats(args: TextStats) -> SyscallResult<Value> {
//!     Ok(json!({ "words": args.text.split_whitespace().count() }))
//! }
//!
//! struct WordCount;
//! impl Driver for WordCount {
//!     fn router() -> Router {
//!         Router::new().syscall("TEXT_STATS", "Count the words of a text.", text_stats)
//!     }
//! }
//! aos_guest_sdk::export_driver!(WordCount);
//! ```
//!
//! Build it as a component (no extra tools needed):
//!
//! ```text
//! rustup target add wasm32-wasip2
//! cargo build --release --target wasm32-wasip2      # crate-type = ["cdylib"]
//! aos driver inspect target/wasm32-wasip2/release/my_driver.wasm
//! aos driver install target/wasm32-wasip2/release/my_driver.wasm
//! aos driver call my_driver TEXT_STATS '{"text":"a b c"}' --grant driver:my_driver
//! ```
//!
//! What a driver may touch is decided by what it imports: a driver that uses
//! `std::fs` imports `wasi:filesystem` and needs an `fs:*` grant; one that
//! calls [`host::timers`] needs `timers`; and so on. Agents without the grant
//! never get an instance of the driver. The capability list is in the
//! AgentOS README.

extern crate self as aos_guest_sdk;

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "wit",
        world: "aos:kernel/full",
        pub_export_macro: true,
        export_macro_name: "__aos_export_full_world",
        default_bindings_module: "aos_guest_sdk::bindings",
        runtime_path: "aos_guest_sdk::__private::wit_bindgen::rt",
    });
}

mod router;

pub use bindings::aos::kernel::types::{SyscallError, SyscallSpec};
pub use router::{Driver, Router};

pub use schemars::{self, JsonSchema};
pub use serde::{self, Deserialize, Serialize};
pub use serde_json::{self, json, Value};

/// The result type of a syscall handler.
pub type SyscallResult<T> = Result<T, SyscallError>;

/// Host interfaces a driver may import. Each one is only linked for agents
/// holding the matching capability.
pub mod host {
    pub use crate::bindings::aos::kernel::config;
    /// `exec` capability.
    pub use crate::bindings::aos::kernel::container;
    /// `memory` capability.
    pub use crate::bindings::aos::kernel::embedder;
    /// Always granted.
    pub use crate::bindings::aos::kernel::log;
    /// `timers` capability.
    pub use crate::bindings::aos::kernel::timers;
    /// `memory` capability.
    pub use crate::bindings::aos::kernel::vector_store;
}

/// Everything a typical driver needs.
pub mod prelude {
    pub use crate::{
        json, Deserialize, Driver, JsonSchema, Router, Serialize, SyscallError, SyscallResult, Value,
    };
}

/// Logging into the kernel's log (shown by `aos logs` with the driver's name).
pub mod log {
    use crate::bindings::aos::kernel::log::{log, Level};
    pub fn debug(msg: &str) {
        log(Level::Debug, msg)
    }
    pub fn info(msg: &str) {
        log(Level::Info, msg)
    }
    pub fn warn(msg: &str) {
        log(Level::Warn, msg)
    }
    pub fn error(msg: &str) {
        log(Level::Error, msg)
    }
}

/// The driver's configuration section (`[drivers.NAME]` in `aos.toml`).
pub mod config {
    /// The value of `key` deserialized as `T`; `None` if unset or of another type.
    pub fn get<T: serde::de::DeserializeOwned>(key: &str) -> Option<T> {
        let raw = crate::bindings::aos::kernel::config::get(key)?;
        serde_json::from_str(&raw).ok()
    }

    /// Like [`get`], with a default.
    pub fn get_or<T: serde::de::DeserializeOwned>(key: &str, default: T) -> T {
        get(key).unwrap_or(default)
    }
}

impl SyscallError {
    /// Maps an I/O error on `what` (usually a path) to the closest syscall error.
    pub fn from_io(err: &std::io::Error, what: &str) -> SyscallError {
        use std::io::ErrorKind as K;
        // WASI errno values do not all map to an `ErrorKind` in std.
        let kind = match err.kind() {
            _ if err.to_string().contains("not empty") => K::DirectoryNotEmpty,
            k => k,
        };
        match kind {
            K::NotFound => SyscallError::NotFound(format!("`{what}` does not exist")),
            K::PermissionDenied => SyscallError::Denied(format!(
                "`{what}`: operation not permitted (paths must stay inside /workspace, and writes need fs:rw)"
            )),
            K::AlreadyExists => SyscallError::Io(format!("`{what}` already exists")),
            K::InvalidInput | K::InvalidFilename => {
                SyscallError::InvalidArguments(format!("`{}`: {err}", what.escape_debug()))
            }
            K::IsADirectory => SyscallError::InvalidArguments(format!("`{what}` is a directory")),
            K::NotADirectory => SyscallError::InvalidArguments(format!("`{what}` is not a directory")),
            K::DirectoryNotEmpty => SyscallError::Io(format!(
                "`{what}` is a non-empty directory (pass \"recursive\": true to delete it)"
            )),
            _ => SyscallError::Io(format!("`{}`: {err}", what.escape_debug())),
        }
    }
}

/// Exports a [`Driver`] as the component's `aos:kernel/driver` implementation.
/// Use once per driver crate.
#[macro_export]
macro_rules! export_driver {
    ($driver:ty) => {
        #[doc(hidden)]
        pub struct __AosDriverExport;

        #[doc(hidden)]
        fn __aos_router() -> &'static $crate::Router {
            static ROUTER: ::std::sync::OnceLock<$crate::Router> = ::std::sync::OnceLock::new();
            ROUTER.get_or_init(<$driver as $crate::Driver>::router)
        }

        impl $crate::bindings::exports::aos::kernel::driver::Guest for __AosDriverExport {
            fn describe() -> ::std::vec::Vec<$crate::SyscallSpec> {
                __aos_router().describe()
            }
            fn handle(
                name: ::std::string::String,
                args: ::std::string::String,
            ) -> ::std::result::Result<::std::string::String, $crate::SyscallError> {
                __aos_router().handle(&name, &args)
            }
        }

        // Component exports only exist on wasm32; native builds of a driver
        // crate (for its unit tests) get none, so they link normally.
        #[cfg(target_arch = "wasm32")]
        $crate::bindings::__aos_export_full_world!(__AosDriverExport with_types_in $crate::bindings);
    };
}

#[doc(hidden)]
pub mod __private {
    pub use wit_bindgen;
}
