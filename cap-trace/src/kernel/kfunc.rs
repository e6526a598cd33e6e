//! The kernel side reads kernel memory through the kfunc `bpf_rdonly_cast` (Linux 6.2+), which
//! the verifier reduces to a register move: a plain load then does what a
//! `bpf_probe_read_kernel` helper call does, at a fraction of the cost. aya 0.14 cannot resolve
//! kfuncs, so the program makes a placeholder call ([`RDONLY_CAST_MARK`]) and the loader
//! patches it here, in a copy of the object, before aya reads it.

use cap_trace_common::RDONLY_CAST_MARK;
use object::{Object, ObjectSection, SectionKind};

/// `BPF_JMP | BPF_CALL`.
const CALL: u8 = 0x85;
/// `src_reg` of a call to a kernel function (`BPF_PSEUDO_KFUNC_CALL`) in the registers byte.
const KFUNC_CALL_REGS: u8 = 2 << 4;
/// A helper every program type may call and that takes no argument
/// (`bpf_get_smp_processor_id`): what the placeholder becomes when the kernel has no
/// `bpf_rdonly_cast`, in code the verifier then drops as dead (`Settings.cast_type` is 0).
const HARMLESS_HELPER: i32 = 8;

/// An 8-byte aligned copy of an eBPF object, as aya's ELF reader wants it.
pub(super) struct Patched {
    words: Vec<u64>,
    len: usize,
}

impl Patched {
    pub(super) fn bytes(&self) -> &[u8] {
        // SAFETY: `words` holds at least `len` initialised bytes; u8 has no alignment needs.
        unsafe { std::slice::from_raw_parts(self.words.as_ptr().cast::<u8>(), self.len) }
    }
}

/// A copy of `object` whose placeholder calls call `kfunc` (the BTF id of `bpf_rdonly_cast` in
/// the kernel's BTF) or, without it, a harmless helper. Returns the copy and how many calls were
/// patched.
pub(super) fn patch(object: &[u8], kfunc: Option<u32>) -> Result<(Patched, usize), String> {
    let mut words = vec![0u64; object.len().div_ceil(8)];
    // SAFETY: `words` spans at least `object.len()` bytes.
    let bytes =
        unsafe { std::slice::from_raw_parts_mut(words.as_mut_ptr().cast::<u8>(), words.len() * 8) };
    bytes[..object.len()].copy_from_slice(object);
    let ranges: Vec<(usize, usize)> = {
        let file = object::File::parse(&bytes[..object.len()])
            .map_err(|e| format!("reading the eBPF object: {e}"))?;
        file.sections()
            .filter(|s| s.kind() == SectionKind::Text)
            .filter_map(|s| s.file_range())
            .map(|(start, size)| (start as usize, size as usize))
            .collect()
    };
    let mut patched = 0;
    for (start, size) in ranges {
        let code = bytes
            .get_mut(start..start + size)
            .ok_or("eBPF object: a code section lies outside the file")?;
        for insn in code.chunks_exact_mut(8) {
            let imm = i32::from_le_bytes([insn[4], insn[5], insn[6], insn[7]]);
            if insn[0] != CALL || insn[1] != 0 || insn[2..4] != [0, 0] || imm != RDONLY_CAST_MARK {
                continue;
            }
            let (regs, imm) = match kfunc {
                Some(id) => (KFUNC_CALL_REGS, id as i32),
                None => (0, HARMLESS_HELPER),
            };
            insn[1] = regs;
            insn[4..8].copy_from_slice(&imm.to_le_bytes());
            patched += 1;
        }
    }
    Ok((
        Patched {
            words,
            len: object.len(),
        },
        patched,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The embedded object holds placeholder calls, and patching leaves none behind.
    #[test]
    fn patches_every_placeholder_of_the_embedded_object() {
        let (with, n) = patch(super::super::OBJECT, Some(12345)).unwrap();
        assert!(n >= 2, "placeholder calls found: {n}");
        let (again, left) = patch(with.bytes(), Some(1)).unwrap();
        assert_eq!(left, 0);
        assert_eq!(again.bytes(), with.bytes());
        let kfunc_calls = with
            .bytes()
            .chunks_exact(8)
            .filter(|i| {
                i[0] == CALL && i[1] == KFUNC_CALL_REGS && i[4..8] == 12345i32.to_le_bytes()
            })
            .count();
        assert_eq!(kfunc_calls, n);
        assert_eq!(with.bytes().len(), super::super::OBJECT.len());
    }

    #[test]
    fn without_the_kfunc_the_placeholder_becomes_a_helper_call() {
        let (without, n) = patch(super::super::OBJECT, None).unwrap();
        assert!(n >= 2);
        let helper_calls = without
            .bytes()
            .chunks_exact(8)
            .filter(|i| i[0] == CALL && i[1] == 0 && i[4..8] == HARMLESS_HELPER.to_le_bytes())
            .count();
        assert!(helper_calls >= n);
    }

    #[test]
    fn rejects_what_is_not_an_object() {
        assert!(patch(b"not an ELF file", None).is_err());
    }
}
