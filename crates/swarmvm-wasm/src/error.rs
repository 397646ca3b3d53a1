//! Why a module is refused.

use swarmvm_primitives::text::shown;

/// Why a module cannot be registered or loaded. Messages are one line; names from the module
/// are escaped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ModuleError {
    /// Over 1 MiB.
    #[error("module is {len} bytes; at most 1 MiB (1048576 bytes) is accepted")]
    TooLarge {
        /// Its size.
        len: usize,
    },
    /// Not valid WebAssembly in the accepted feature set (floats, SIMD, bulk memory and the
    /// other proposals are refused here).
    #[error(
        "not valid WebAssembly 1.0 with sign-extension and mutable globals (no floats): {}",
        shown(.0)
    )]
    Invalid(String),
    /// Valid WebAssembly that uses features outside the accepted set (named, as a compiler
    /// newer than the one a module was meant for may emit them).
    #[error(
        "not valid WebAssembly 1.0 with sign-extension and mutable globals (no floats): the module uses {0}; build it for WebAssembly 1.0 (for Rust: -C target-cpu=mvp, as sdk/rust does)"
    )]
    Feature(String),
    /// WebAssembly text that does not parse.
    #[error("cannot read the WebAssembly text: {}", shown(.0))]
    Text(String),
    /// An import the ABI does not offer.
    #[error("import {}.{} is not part of the swarmvm ABI", shown(.module), shown(.name))]
    Import {
        /// Its module.
        module: String,
        /// Its name.
        name: String,
    },
    /// An ABI import with another type than the ABI's.
    #[error("import swarmvm.{} does not have the ABI's type", shown(.0))]
    ImportType(String),
    /// A start function (modules run only through `run`).
    #[error("module has a start function; the ABI runs modules only through 'run'")]
    StartFunction,
    /// No memory of its own.
    #[error("module defines no memory; it must define one and export it as 'memory'")]
    NoMemory,
    /// An initial memory over 256 pages.
    #[error("module's initial memory is {pages} pages; at most 256 (16 MiB)")]
    MemoryTooLarge {
        /// Its initial pages.
        pages: u64,
    },
    /// A table of more elements than the ABI allows (from rules version 2).
    #[error(
        "module's tables have {elements} elements initially; at most {max} (each costs fuel to set up, from rules version 2)",
        max = crate::check::MAX_TABLE_ELEMENTS
    )]
    TableTooLarge {
        /// Its tables' initial elements.
        elements: u64,
    },
    /// `memory` or `run` not exported.
    #[error("module does not export '{0}'")]
    MissingExport(&'static str),
    /// `run` with another type.
    #[error("export 'run' must be a function of no parameters returning an i32")]
    RunType,
    /// The engine refused it (after the checks above passed).
    #[error("the engine cannot compile the module: {}", shown(.0))]
    Compile(String),
}

/// A module the ABI or the engine does not accept is refused.
impl swarmvm_primitives::Classify for ModuleError {
    fn class(&self) -> swarmvm_primitives::ErrorClass {
        swarmvm_primitives::ErrorClass::Refused
    }
}

#[cfg(test)]
mod tests {
    use swarmvm_primitives::{Classify as _, ErrorClass};

    use super::*;

    #[test]
    fn a_module_error_refuses_the_module() {
        assert_eq!(ModuleError::NoMemory.class(), ErrorClass::Refused);
        assert_eq!(ModuleError::Compile("x".into()).class(), ErrorClass::Refused);
    }
}
