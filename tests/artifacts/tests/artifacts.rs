//! The build script produced one component per plugin, of the expected world.

use std::collections::BTreeSet;

use bosun_test_artifacts::ALL;
use wasmparser::{Parser, Payload};

/// `\0asm`, then the component-model layer's version bytes.
const COMPONENT_MAGIC: [u8; 8] = [0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00];

/// The names of a component's top-level imports and exports.
fn imports_and_exports(bytes: &[u8]) -> (BTreeSet<String>, BTreeSet<String>) {
    let (mut imports, mut exports) = (BTreeSet::new(), BTreeSet::new());
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(bytes) {
        match payload.expect("the component parses") {
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentImportSection(section) if depth == 0 => {
                for import in section {
                    imports.insert(import.expect("import parses").name.name.to_owned());
                }
            }
            Payload::ComponentExportSection(section) if depth == 0 => {
                for export in section {
                    exports.insert(export.expect("export parses").name.name.to_owned());
                }
            }
            _ => {}
        }
    }
    (imports, exports)
}

#[test]
fn every_artifact_is_a_component() {
    for (name, path) in ALL {
        let bytes =
            std::fs::read(path).unwrap_or_else(|err| panic!("{name}: reading {path}: {err}"));
        assert!(
            bytes.starts_with(&COMPONENT_MAGIC),
            "{name}: {path} does not start with the component magic: {:02x?}",
            &bytes[..bytes.len().min(8)]
        );
    }
}

#[test]
fn controllers_export_the_controller_world_and_import_only_bosun_and_wasi() {
    for (name, path) in ALL {
        let bytes =
            std::fs::read(path).unwrap_or_else(|err| panic!("{name}: reading {path}: {err}"));
        let (imports, exports) = imports_and_exports(&bytes);
        println!(
            "{name}: {} bytes\n  imports: {imports:?}\n  exports: {exports:?}",
            bytes.len()
        );
        let expected: BTreeSet<String> = ["metadata", "init", "reconcile"]
            .into_iter()
            .map(str::to_owned)
            .collect();
        assert_eq!(exports, expected, "{name}: exports");
        // The world's `use types.{...}` becomes type imports named after the types.
        let world_types = ["plugin-metadata", "reconcile-request", "reconcile-outcome"];
        for import in &imports {
            assert!(
                import.starts_with("bosun:operator/") && import.ends_with("@0.1.0")
                    || import.starts_with("wasi:")
                    || world_types.contains(&import.as_str()),
                "{name}: unexpected import {import}"
            );
        }
        // Unused imports are dropped when the component is made, so only `types` is sure.
        assert!(
            imports.contains("bosun:operator/types@0.1.0"),
            "{name}: no bosun:operator/types import in {imports:?}"
        );
    }
}

#[test]
fn the_admission_plugins_export_the_admission_world() {
    for path in [
        bosun_test_artifacts::TEST_ADMISSION,
        bosun_test_artifacts::SIDECARSET_INJECTOR,
    ] {
        let bytes = std::fs::read(path).unwrap_or_else(|err| panic!("reading {path}: {err}"));
        assert!(
            bytes.starts_with(&COMPONENT_MAGIC),
            "{path} is not a component"
        );
        let (_, exports) = imports_and_exports(&bytes);
        let expected: BTreeSet<String> = ["metadata", "init", "review"]
            .into_iter()
            .map(str::to_owned)
            .collect();
        assert_eq!(exports, expected, "{path}");
    }
}
