//! The kernel side calls kfuncs: `bpf_rdonly_cast` (Linux 6.2+), which the verifier reduces to a
//! register move, so that a plain load does what a `bpf_probe_read_kernel` helper call does at a
//! fraction of the cost; and `bpf_task_work_schedule_resume` (6.18+), which follows a denied
//! check's syscall to its end. aya 0.14 cannot resolve kfuncs, so the programs make placeholder
//! calls ([`RDONLY_CAST_MARK`](cap_trace_common::RDONLY_CAST_MARK),
//! [`TASK_WORK_MARK`](cap_trace_common::TASK_WORK_MARK)) that the loader patches here, in a copy
//! of the object, before aya reads it: each into a call to the kfunc's BTF id in the running
//! kernel, or, where the kernel lacks it, into a harmless helper call in code that is dead (the
//! settings say so) or in programs that are not loaded.

use object::{Object, ObjectSection, SectionKind};

/// `BPF_JMP | BPF_CALL`.
const CALL: u8 = 0x85;
/// `src_reg` of a call to a kernel function (`BPF_PSEUDO_KFUNC_CALL`) in the registers byte.
const KFUNC_CALL_REGS: u8 = 2 << 4;
/// A helper every program type may call and that takes no argument
/// (`bpf_get_smp_processor_id`): what a placeholder becomes when the kernel lacks its kfunc.
const HARMLESS_HELPER: i32 = 8;

/// A placeholder call's mark and the BTF id, in the running kernel, of the kfunc it stands for.
pub(super) type Kfunc = (i32, Option<u32>);

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

    pub(super) fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `bytes`, through the unique borrow of `words`.
        unsafe { std::slice::from_raw_parts_mut(self.words.as_mut_ptr().cast::<u8>(), self.len) }
    }
}

/// A copy of `object` whose placeholder calls call their kfunc (by its BTF id in the kernel's
/// BTF) or, without it, a harmless helper. Returns the copy and how many calls were patched.
pub(super) fn patch(object: &[u8], kfuncs: &[Kfunc]) -> Result<(Patched, usize), String> {
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
            if insn[0] != CALL || insn[1] != 0 || insn[2..4] != [0, 0] {
                continue;
            }
            let Some(&(_, kfunc)) = kfuncs.iter().find(|(mark, _)| *mark == imm) else {
                continue;
            };
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

/// `BPF_LD | BPF_IMM | BPF_DW`: the first half of a 64-bit immediate load.
const LD_IMM64: u8 = 0x18;

/// Writes `value` into every placeholder `rX = mark ll` of `object` (a constant load, without a
/// relocation); returns how many it changed. Each code section is 8-byte aligned in the copy.
pub(super) fn set_immediates(object: &mut Patched, mark: i32, value: u32) -> Result<usize, String> {
    let ranges: Vec<(usize, usize)> = object::File::parse(object.bytes())
        .map_err(|e| format!("reading the eBPF object: {e}"))?
        .sections()
        .filter(|s| s.kind() == SectionKind::Text)
        .filter_map(|s| s.file_range())
        .map(|(start, size)| (start as usize, size as usize))
        .collect();
    let mut changed = 0;
    for (start, size) in ranges {
        let code = object
            .bytes_mut()
            .get_mut(start..start + size)
            .ok_or("eBPF object: a code section lies outside the file")?;
        let mut at = 0;
        while at + 16 <= code.len() {
            let insn = &mut code[at..at + 16];
            let wide = insn[0] == LD_IMM64;
            if wide
                && insn[1] >> 4 == 0
                && insn[4..8] == mark.to_le_bytes()
                && insn[12..16] == [0; 4]
            {
                insn[4..8].copy_from_slice(&value.to_le_bytes());
                changed += 1;
            }
            // A 64-bit immediate load takes two instruction slots.
            at += if wide { 16 } else { 8 };
        }
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use cap_trace_common::{RDONLY_CAST_MARK, TASK_WORK_MARK};

    use super::*;

    fn kfunc_calls(object: &Patched, id: i32) -> usize {
        object
            .bytes()
            .chunks_exact(8)
            .filter(|i| i[0] == CALL && i[1] == KFUNC_CALL_REGS && i[4..8] == id.to_le_bytes())
            .count()
    }

    /// The embedded object holds placeholder calls of both kfuncs, each becomes a call to its
    /// own kfunc, and patching leaves none behind.
    #[test]
    fn patches_every_placeholder_of_the_embedded_object() {
        let kfuncs = [(RDONLY_CAST_MARK, Some(12345)), (TASK_WORK_MARK, Some(777))];
        let (with, n) = patch(super::super::OBJECT, &kfuncs).unwrap();
        let casts = kfunc_calls(&with, 12345);
        let task_works = kfunc_calls(&with, 777);
        assert!(casts >= 2, "bpf_rdonly_cast calls: {casts}");
        // One in each task-work program: tracepoint, raw tracepoint, fexit, kretprobe.
        assert!(task_works >= 4, "task-work calls: {task_works}");
        assert_eq!(casts + task_works, n);
        let (again, left) = patch(with.bytes(), &kfuncs).unwrap();
        assert_eq!(left, 0);
        assert_eq!(again.bytes(), with.bytes());
        assert_eq!(with.bytes().len(), super::super::OBJECT.len());
    }

    #[test]
    fn without_the_kfunc_the_placeholder_becomes_a_helper_call() {
        let kfuncs = [(RDONLY_CAST_MARK, None), (TASK_WORK_MARK, Some(777))];
        let (without, n) = patch(super::super::OBJECT, &kfuncs).unwrap();
        let task_works = kfunc_calls(&without, 777);
        assert!(n > task_works);
        let helper_calls = without
            .bytes()
            .chunks_exact(8)
            .filter(|i| i[0] == CALL && i[1] == 0 && i[4..8] == HARMLESS_HELPER.to_le_bytes())
            .count();
        assert!(helper_calls >= n - task_works);
    }

    /// The embedded object tests whether the kernel has the helpers of 5.15 by placeholder
    /// immediates; each becomes the value, and none is left.
    #[test]
    fn sets_every_placeholder_immediate() {
        use cap_trace_common::HELPER_READS_MARK;
        let (mut object, _) = patch(super::super::OBJECT, &[]).unwrap();
        let n = set_immediates(&mut object, HELPER_READS_MARK, 1).unwrap();
        // At least the task's and each field read's test, in each tracing program.
        assert!(n >= 10, "placeholders: {n}");
        assert_eq!(set_immediates(&mut object, HELPER_READS_MARK, 1), Ok(0));
        assert_eq!(set_immediates(&mut object, 1, 7), Ok(n));
    }

    #[test]
    fn other_calls_are_left_alone() {
        let (untouched, n) = patch(super::super::OBJECT, &[(0x1234_5678, Some(1))]).unwrap();
        assert_eq!(n, 0);
        assert_eq!(untouched.bytes(), super::super::OBJECT);
    }

    #[test]
    fn rejects_what_is_not_an_object() {
        assert!(patch(b"not an ELF file", &[]).is_err());
    }
}
