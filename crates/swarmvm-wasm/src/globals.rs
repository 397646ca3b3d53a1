//! A module prepared for instance reuse: the same module with every global it defines also
//! exported under a reserved name, so a session can set them back to their initial values
//! between actions. Nothing else changes; custom sections are dropped (they never affect a
//! run). The module's identity stays the hash of the bytes registered.

use wasm_encoder::{ExportKind, ExportSection, RawSection};
use wasmparser::{ExternalKind, Parser, Payload};

use crate::runtime::GLOBAL_EXPORT;

/// The prepared module and how many globals it defines; `None` when a name would collide
/// (then the caller instantiates afresh for every action instead).
pub(crate) fn export_globals(bytes: &[u8]) -> Option<(Vec<u8>, u32)> {
    let mut globals = 0;
    let mut out = wasm_encoder::Module::new();
    for payload in Parser::new(0).parse_all(bytes) {
        let payload = payload.ok()?;
        match &payload {
            Payload::GlobalSection(s) => {
                globals = s.count();
                out.section(&RawSection { id: 6, data: &bytes[s.range()] });
            }
            Payload::ExportSection(s) => {
                let mut exports = ExportSection::new();
                for export in s.clone() {
                    let export = export.ok()?;
                    if export.name.starts_with(GLOBAL_EXPORT) {
                        return None;
                    }
                    let kind = match export.kind {
                        ExternalKind::Func => ExportKind::Func,
                        ExternalKind::Table => ExportKind::Table,
                        ExternalKind::Memory => ExportKind::Memory,
                        ExternalKind::Global => ExportKind::Global,
                        _ => return None,
                    };
                    exports.export(export.name, kind, export.index);
                }
                for i in 0..globals {
                    exports.export(&format!("{GLOBAL_EXPORT}{i}"), ExportKind::Global, i);
                }
                out.section(&exports);
            }
            Payload::CustomSection(_) => {}
            other => {
                if let Some((id, range)) = other.as_section() {
                    out.section(&RawSection { id, data: &bytes[range] });
                }
            }
        }
    }
    Some((out.finish(), globals))
}
