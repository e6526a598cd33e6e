//! The dedupe maps (`CHECKS`, `OUTCOMES`), the cgroup members' map (`MEMBERS`), the process trees
//! (`TREES`) and the losses per cgroup (`LOSSES`) allocate their entries as they fill (`BPF_F_NO_PREALLOC`): most runs use a
//! few hundred of their thousands of slots. Before Linux
//! 6.1, whose BPF memory allocator made that safe in any context, the verifier accepts such a
//! map in a tracing program but prints a kernel `WARNING` ("trace type BPF program uses run-time
//! allocation"), which taints the kernel, panics it under `panic_on_warn`, and is refused
//! outright on PREEMPT_RT. There the loader clears the flag in its copy of the object: the maps
//! are then allocated whole at load time (about 7 MiB at their default sizes, 4 of them for the
//! 65,536 slots of `MEMBERS`, plus the 16,384 small slots of `TREES`).

use object::{Object, ObjectSection, ObjectSymbol};

use crate::kernel::kfunc::Patched;

/// The maps allocated as they fill.
pub(super) const GROWING_MAPS: [&str; 5] = ["CHECKS", "OUTCOMES", "MEMBERS", "LOSSES", "TREES"];

/// `BPF_F_NO_PREALLOC`.
const NO_PREALLOC: u32 = 1;

/// Size of a legacy map definition (`struct bpf_map_def`: type, key size, value size, max
/// entries, flags, id, pinning), and where its flags are.
const MAP_DEF_SIZE: u64 = 28;
const FLAGS_AT: usize = 16;

/// Clears `BPF_F_NO_PREALLOC` on the maps `names` in `object`; returns how many it changed.
pub(super) fn preallocate(object: &mut Patched, names: &[&str]) -> Result<usize, String> {
    let mut at = Vec::new();
    {
        let file = object::File::parse(object.bytes())
            .map_err(|e| format!("reading the eBPF object: {e}"))?;
        for symbol in file.symbols() {
            if !symbol.name().is_ok_and(|n| names.contains(&n)) {
                continue;
            }
            let section = symbol
                .section_index()
                .and_then(|i| file.section_by_index(i).ok())
                .filter(|s| s.name() == Ok("maps"))
                .ok_or("eBPF object: a map outside the maps section")?;
            let (start, size) = section
                .file_range()
                .ok_or("eBPF object: the maps section has no data")?;
            if symbol.size() != MAP_DEF_SIZE || symbol.address() + MAP_DEF_SIZE > size {
                return Err("eBPF object: a map definition of an unknown layout".into());
            }
            at.push((start + symbol.address()) as usize + FLAGS_AT);
        }
    }
    let bytes = object.bytes_mut();
    let mut changed = 0;
    for offset in at {
        let flags = &mut bytes[offset..offset + 4];
        let value = u32::from_le_bytes([flags[0], flags[1], flags[2], flags[3]]);
        if value & NO_PREALLOC != 0 {
            flags.copy_from_slice(&(value & !NO_PREALLOC).to_le_bytes());
            changed += 1;
        }
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::kfunc::patch;

    /// The flags of each named map definition in `object`.
    fn flags(object: &[u8], name: &str) -> u32 {
        let file = object::File::parse(object).unwrap();
        let symbol = file.symbols().find(|s| s.name() == Ok(name)).unwrap();
        let section = file
            .section_by_index(symbol.section_index().unwrap())
            .unwrap();
        let at = (section.file_range().unwrap().0 + symbol.address()) as usize + FLAGS_AT;
        u32::from_le_bytes(object[at..at + 4].try_into().unwrap())
    }

    #[test]
    fn the_growing_maps_become_preallocated_and_nothing_else_changes() {
        let object = crate::kernel::OBJECT;
        for name in GROWING_MAPS {
            assert_eq!(flags(object, name), NO_PREALLOC, "{name}");
        }
        let (mut copy, _) = patch(object, &[]).unwrap();
        let before = copy.bytes().to_vec();
        assert_eq!(
            preallocate(&mut copy, &GROWING_MAPS),
            Ok(GROWING_MAPS.len())
        );
        for name in GROWING_MAPS {
            assert_eq!(flags(copy.bytes(), name), 0, "{name}");
        }
        let differing = before
            .iter()
            .zip(copy.bytes())
            .filter(|(a, b)| a != b)
            .count();
        assert_eq!(differing, GROWING_MAPS.len());
        // Done already: nothing more to change.
        assert_eq!(preallocate(&mut copy, &GROWING_MAPS), Ok(0));
    }
}
