//! A module's admission: the ABI's rules checked on its bytes before it is registered,
//! stored or run (see `docs/wasm.md`).

use swarmvm_primitives::{Hash32, Rules};
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

/// The features outside the accepted set that a compiler may emit, by name: what
/// [`features_used`] looks for.
const OTHER_FEATURES: [(WasmFeatures, &str); 12] = [
    (WasmFeatures::FLOATS, "floating point"),
    (WasmFeatures::SATURATING_FLOAT_TO_INT, "saturating float-to-int conversions"),
    (WasmFeatures::BULK_MEMORY, "bulk memory"),
    (WasmFeatures::REFERENCE_TYPES, "reference types"),
    (WasmFeatures::MULTI_VALUE, "multi-value"),
    (WasmFeatures::SIMD, "SIMD"),
    (WasmFeatures::RELAXED_SIMD, "relaxed SIMD"),
    (WasmFeatures::THREADS, "threads"),
    (WasmFeatures::TAIL_CALL, "tail calls"),
    (WasmFeatures::EXCEPTIONS, "exceptions"),
    (WasmFeatures::EXTENDED_CONST, "extended constant expressions"),
    (WasmFeatures::MULTI_MEMORY, "multiple memories"),
];

/// The features of [`OTHER_FEATURES`] that `bytes` needs, when they are what keeps it from
/// validating: with all of them it validates, and without each of those named it does not.
/// Empty when the module is invalid for another reason (then the validator's message says
/// why).
fn features_used(bytes: &[u8]) -> Vec<&'static str> {
    let all = OTHER_FEATURES.iter().fold(features(), |f, (x, _)| f | *x);
    if Validator::new_with_features(all).validate_all(bytes).is_err() {
        return Vec::new();
    }
    OTHER_FEATURES
        .iter()
        .filter(|(x, _)| {
            Validator::new_with_features(all.difference(*x)).validate_all(bytes).is_err()
        })
        .map(|(_, name)| *name)
        .collect()
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
    /// Its tables' initial elements, together.
    pub table_elements: u64,
}

/// From rules version 2: the most table elements a module may have (its tables' initial
/// sizes together). Each costs fuel when the module is instantiated.
pub const MAX_TABLE_ELEMENTS: u64 = 65_536;

/// Checks `bytes` against the ABI: at most 1 MiB; valid WebAssembly in the accepted feature
/// set; imports only the ABI's functions, with their types; no start function; one memory
/// of its own, exported as `memory`, initially at most 256 pages; `run` exported as a
/// function of no parameters returning an `i32`. Then compiles it exactly as execution will
/// (the runtime's engine configuration, the bytes prepared as the runtime prepares them): a
/// module the engine cannot compile (one function with 40,000 locals passes the validator,
/// which allows 50,000, but not wasmi) is refused here, when it is checked or registered,
/// never when a bundle that carries it applies.
/// Its tables may have at most [`MAX_TABLE_ELEMENTS`] elements (the newest rules).
pub fn check_module(bytes: &[u8]) -> Result<ModuleInfo, ModuleError> {
    check_module_under(bytes, Rules::CURRENT)
}

/// [`check_module`] under `rules`: the table bound applies from version 2, so a bundle of an
/// older chain is checked as it was.
pub fn check_module_under(bytes: &[u8], rules: Rules) -> Result<ModuleInfo, ModuleError> {
    let info = check_abi(bytes)?;
    if rules.has(Rules::V2) && info.table_elements > MAX_TABLE_ELEMENTS {
        return Err(ModuleError::TableTooLarge { elements: info.table_elements });
    }
    compile(bytes)?;
    Ok(info)
}

/// Compiles `bytes` exactly as the runtime does when it loads a module: the engine's one
/// configuration (`runtime::config`, metered, eager compilation, the accepted feature set)
/// and the same bytes (with its globals exported for resets when that can be done, as
/// sessions use it). In an engine of its own that is dropped with the module: wasmi keeps
/// compiled code as long as its engine lives, so checks leave nothing behind.
fn compile(bytes: &[u8]) -> Result<(), ModuleError> {
    let engine = wasmi::Engine::new(&crate::runtime::config(true));
    crate::runtime::compile(&engine, bytes).map(drop)
}

/// [`check_module`] without the compilation: the ABI's rules on the bytes alone. For a
/// caller that compiles the module right after with the runtime's engine anyway.
pub(crate) fn check_abi(bytes: &[u8]) -> Result<ModuleInfo, ModuleError> {
    if bytes.len() > MAX_MODULE_LEN {
        return Err(ModuleError::TooLarge { len: bytes.len() });
    }
    if let Err(e) = Validator::new_with_features(features()).validate_all(bytes) {
        let used = features_used(bytes);
        if !used.is_empty() {
            return Err(ModuleError::Feature(used.join(", ")));
        }
        return Err(ModuleError::Invalid(e.message().to_owned()));
    }
    let mut types: Vec<FuncType> = Vec::new();
    let mut funcs: Vec<u32> = Vec::new();
    let mut imports = Vec::new();
    let mut exports = Vec::new();
    let mut memories: Vec<u64> = Vec::new();
    let mut table_elements = 0u64;
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
            Payload::TableSection(section) => {
                for table in section {
                    let table = table.map_err(|e| ModuleError::Invalid(e.message().to_owned()))?;
                    table_elements = table_elements.saturating_add(table.ty.initial);
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
        table_elements,
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A module whose `run` declares `locals` i32 locals and uses the last one (and a
    /// temporary after them all).
    fn with_locals(locals: usize) -> Vec<u8> {
        let last = locals - 1;
        let text = format!(
            r#"(module (memory (export "memory") 1)
                (func (export "run") (result i32) (local {})
                  (local.set {last} (i32.const 1))
                  (i32.sub (i32.add (local.get 0) (local.get {last})) (i32.const 1))))"#,
            "i32 ".repeat(locals)
        );
        module_bytes(text.as_bytes()).unwrap()
    }

    #[test]
    fn a_module_the_engine_cannot_compile_is_refused_by_the_check() {
        // The validator alone allows it (it allows 50,000 locals a function)...
        let wasm = with_locals(40_000);
        Validator::new_with_features(features()).validate_all(&wasm).unwrap();
        check_abi(&wasm).unwrap();
        // ... wasmi does not, so neither does the check, with a clear reason.
        let refused = check_module(&wasm).unwrap_err();
        assert!(matches!(refused, ModuleError::Compile(_)), "{refused}");
        let text = refused.to_string();
        assert!(text.starts_with("the engine cannot compile the module: "), "{text}");
        assert!(!text.contains('\n'), "{text}");
        // And the runtime refuses it as well: what the check refuses is what cannot run.
        assert!(crate::Runtime::new().load(&wasm).is_err());
        // Many locals, within what the engine compiles, are accepted and load.
        let fine = with_locals(1_000);
        let info = check_module(&fine).unwrap();
        assert_eq!(crate::Runtime::new().load(&fine).unwrap(), info.hash);
    }
}
