//! Operations as WebAssembly modules: the ABI's checks on a module's bytes
//! ([`check_module`]) and their metered, deterministic execution with wasmi ([`Runtime`],
//! the VM's [`swarmvm_vm::ModuleRunner`]). The ABI is documented in `docs/wasm.md`.
//!
//! ```
//! use swarmvm_wasm::{Runtime, check_module, module_bytes};
//!
//! let wasm = module_bytes(br#"(module (memory (export "memory") 1)
//!     (func (export "run") (result i32) (i32.const 0)))"#)?;
//! let info = check_module(&wasm)?;
//! let runtime = Runtime::new();
//! assert_eq!(runtime.load(&wasm)?, info.hash);
//! # Ok::<(), swarmvm_wasm::ModuleError>(())
//! ```
#![cfg_attr(not(test), warn(unused_crate_dependencies))]

mod check;
mod error;
mod globals;
mod runtime;

pub use check::{
    ABI, MAX_MODULE_LEN, MAX_PAGES, MAX_TABLE_ELEMENTS, ModuleInfo, check_module,
    check_module_under, features, module_bytes,
};
pub use error::ModuleError;
pub use runtime::{
    IMPORT_FUEL, INSTANCE_FUEL, MAX_CALL_DEPTH, MAX_MESSAGE, MAX_WRITTEN, PAGE_FUEL, Runtime,
    TABLE_ELEMENT_FUEL, fuel_used,
};
pub use swarmvm_primitives::fuel::{DEFAULT_FUEL, MAX_FUEL};
