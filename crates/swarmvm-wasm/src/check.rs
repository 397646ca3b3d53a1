//! A module's admission: the ABI's rules checked on its bytes before it is registered,
//! stored or run (see `docs/wasm.md`).

use swarmvm_primitives::Hash32;
use wasmparser::{
    ExternalKind, FuncType, Parser, Payload, TypeRef, ValType, Validator, WasmFeatures,
};

use crate::error::ModuleError;

/// The largest module accepted, in bytes.
pub const MAX_MODULE_LEN: usize = 1024 * 1024;
/// The most memory a module may have, in 64 KiB pages: its initial size at registration,
/// and its size at run time (`memory.grow` beyond it returns -1).
pub const MAX_PAGES: u32 = 256;

/// The imports a module may use, from module `swarmvm`, with their types.
pub const ABI: [(&str, &[ValType], &[ValType]); 9] = {
    use ValType::{I32, I64};
    [
        ("input_len", &[], &[I32]),
        ("input_read", &[I32], &[]),
        ("caller", &[I32], &[]),
        ("seq", &[], &[I64]),
        ("time", &[], &[I64]),
        ("get", &[I32, I32, I32, I32], &[I32]),
        ("set", &[I32, I32, I32, I32], &[]),
        ("remove", &[I32, I32], &[]),
        ("fail", &[I32, I32], &[]),
    ]
};

/// WebAssembly 1.0 with the sign-extension and mutable-global proposals, no floats: what a
/// module may use.
pub fn features() -> WasmFeatures {
    WasmFeatures::MUTABLE_GLOBAL | WasmFeatures::SIGN_EXTENSION
}

/// What [`check_module`] found in a module that passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleInfo {
    /// SHA-256 of its bytes: the hash registrations name.
    pub hash: Hash32,
    /// Its size in bytes.
    pub size: usize,
    /// Its imports (names in module `swarmvm`), in order.
    pub imports: Vec<String>,
    /// Its exports, in order.
    pub exports: Vec<String>,
    /// Its memory's initial size, in pages.
    pub initial_pages: u32,
}

/// Checks `bytes` against the ABI: at most 1 MiB; valid WebAssembly in the accepted feature
/// set; imports only the ABI's functions, with their types; no start function; one memory
/// of its own, exported as `memory`, initially at most 256 pages; `run` exported as a
/// function of no parameters returning an `i32`.
pub fn check_module(bytes: &[u8]) -> Result<ModuleInfo, ModuleError> {
    if bytes.len() > MAX_MODULE_LEN {
        return Err(ModuleError::TooLarge { len: bytes.len() });
    }
    Validator::new_with_features(features())
        .validate_all(bytes)
        .map_err(|e| ModuleError::Invalid(e.message().to_owned()))?;
    let mut types: Vec<FuncType> = Vec::new();
    let mut funcs: Vec<u32> = Vec::new();
    let mut imports = Vec::new();
    let mut exports = Vec::new();
    let mut memories: Vec<u64> = Vec::new();
    let mut run = None;
    let mut memory_exported = false;
    for payload in Parser::new(0).parse_all(bytes) {
        match payload.map_err(|e| ModuleError::Invalid(e.message().to_owned()))? {
            Payload::TypeSection(section) => {
                for ty in section.into_iter_err_on_gc_types() {
                    types.push(ty.map_err(|e| ModuleError::Invalid(e.message().to_owned()))?);
                }
            }
            Payload::ImportSection(section) => {
                for import in section {
                    let import =
                        import.map_err(|e| ModuleError::Invalid(e.message().to_owned()))?;
                    let TypeRef::Func(ty) = import.ty else {
                        return Err(ModuleError::Import {
                            module: import.module.to_owned(),
                            name: import.name.to_owned(),
                        });
                    };
                    check_import(import.module, import.name, types.get(ty as usize))?;
                    imports.push(import.name.to_owned());
                    funcs.push(ty);
                }
            }
            Payload::FunctionSection(section) => {
                for ty in section {
                    funcs.push(ty.map_err(|e| ModuleError::Invalid(e.message().to_owned()))?);
                }
            }
            Payload::MemorySection(section) => {
                for memory in section {
                    let memory =
                        memory.map_err(|e| ModuleError::Invalid(e.message().to_owned()))?;
                    memories.push(memory.initial);
                }
            }
            Payload::ExportSection(section) => {
                for export in section {
                    let export =
                        export.map_err(|e| ModuleError::Invalid(e.message().to_owned()))?;
                    match (export.name, export.kind) {
                        ("memory", ExternalKind::Memory) => memory_exported = true,
                        ("run", ExternalKind::Func) => run = Some(export.index),
                        _ => {}
                    }
                    exports.push(export.name.to_owned());
                }
            }
            Payload::StartSection { .. } => return Err(ModuleError::StartFunction),
            _ => {}
        }
    }
    let initial_pages = match memories.as_slice() {
        [pages] => *pages,
        [] => return Err(ModuleError::NoMemory),
        _ => return Err(ModuleError::Invalid("more than one memory".into())),
    };
    if initial_pages > u64::from(MAX_PAGES) {
        return Err(ModuleError::MemoryTooLarge { pages: initial_pages });
    }
    if !memory_exported {
        return Err(ModuleError::MissingExport("memory"));
    }
    let run = run.ok_or(ModuleError::MissingExport("run"))?;
    let run_type = funcs.get(run as usize).and_then(|ty| types.get(*ty as usize));
    if !run_type.is_some_and(|t| t.params().is_empty() && t.results() == [ValType::I32]) {
        return Err(ModuleError::RunType);
    }
    Ok(ModuleInfo {
        hash: Hash32::digest(bytes),
        size: bytes.len(),
        imports,
        exports,
        initial_pages: u32::try_from(initial_pages).unwrap_or(MAX_PAGES),
    })
}

fn check_import(module: &str, name: &str, ty: Option<&FuncType>) -> Result<(), ModuleError> {
    let forbidden = || ModuleError::Import { module: module.to_owned(), name: name.to_owned() };
    if module != "swarmvm" {
        return Err(forbidden());
    }
    let (_, params, results) = ABI.iter().find(|(n, ..)| *n == name).ok_or_else(forbidden)?;
    match ty {
        Some(t) if t.params() == *params && t.results() == *results => Ok(()),
        _ => Err(ModuleError::ImportType(name.to_owned())),
    }
}

/// A module from WebAssembly text (`.wat`) or binary bytes.
pub fn module_bytes(bytes: &[u8]) -> Result<Vec<u8>, ModuleError> {
    if bytes.starts_with(b"\0asm") {
        return Ok(bytes.to_vec());
    }
    wat::parse_bytes(bytes)
        .map(|b| b.into_owned())
        .map_err(|e| ModuleError::Text(e.to_string().lines().next().unwrap_or_default().to_owned()))
}
