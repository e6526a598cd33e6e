//! Just enough of a BTF reader to find the kernel struct offsets and tracepoint prototypes the
//! eBPF programs need, from the running kernel's `/sys/kernel/btf/vmlinux`. Nothing
//! kernel-specific is compiled into the programs: they get these numbers as globals.

use std::collections::HashMap;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("malformed BTF: {0}")]
    Malformed(&'static str),
    #[error("kernel BTF has no struct {0}")]
    NoStruct(String),
    #[error("kernel BTF has no member {1} in struct {0}")]
    NoMember(String, String),
    #[error("kernel BTF has no prototype for {0}")]
    NoPrototype(String),
}

const KIND_INT: u32 = 1;
const KIND_PTR: u32 = 2;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_FWD: u32 = 7;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_FUNC: u32 = 12;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_FLOAT: u32 = 16;
const KIND_DECL_TAG: u32 = 17;
const KIND_TYPE_TAG: u32 = 18;
const KIND_ENUM64: u32 = 19;

#[derive(Debug, Clone)]
struct Type {
    name: u32,
    kind: u32,
    kind_flag: bool,
    /// `size` or `type` depending on the kind.
    size_or_type: u32,
    /// Members (struct/union: name, type, bit offset), params (func proto: name, type, 0) or
    /// enumerators (enum: name, value, 0).
    members: Vec<(u32, u32, u32)>,
}

/// A parsed BTF blob.
pub struct Btf {
    strings: Vec<u8>,
    /// Index 0 is the implicit `void`.
    types: Vec<Type>,
    by_name: HashMap<(String, u32), u32>,
}

impl Btf {
    pub fn from_file(path: &Path) -> Result<Self, BtfError> {
        let data = std::fs::read(path).map_err(|source| BtfError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&data)
    }

    /// The running kernel's BTF.
    pub fn from_sys_fs() -> Result<Self, BtfError> {
        Self::from_file(Path::new("/sys/kernel/btf/vmlinux"))
    }

    pub fn parse(data: &[u8]) -> Result<Self, BtfError> {
        let u16_at = |off: usize| -> Result<u16, BtfError> {
            data.get(off..off + 2)
                .map(|b| u16::from_le_bytes([b[0], b[1]]))
                .ok_or(BtfError::Malformed("truncated"))
        };
        let u32_at = |off: usize| -> Result<u32, BtfError> {
            data.get(off..off + 4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .ok_or(BtfError::Malformed("truncated"))
        };
        if u16_at(0)? != 0xeb9f {
            return Err(BtfError::Malformed("bad magic (not little-endian BTF)"));
        }
        let hdr_len = u32_at(4)? as usize;
        let type_off = u32_at(8)? as usize;
        let type_len = u32_at(12)? as usize;
        let str_off = u32_at(16)? as usize;
        let str_len = u32_at(20)? as usize;
        let types_start = hdr_len + type_off;
        let types_end = types_start + type_len;
        let strings = data
            .get(hdr_len + str_off..hdr_len + str_off + str_len)
            .ok_or(BtfError::Malformed("string section out of bounds"))?
            .to_vec();
        if types_end > data.len() {
            return Err(BtfError::Malformed("type section out of bounds"));
        }

        let mut types = vec![Type {
            name: 0,
            kind: 0,
            kind_flag: false,
            size_or_type: 0,
            members: Vec::new(),
        }];
        let mut off = types_start;
        while off < types_end {
            let name = u32_at(off)?;
            let info = u32_at(off + 4)?;
            let size_or_type = u32_at(off + 8)?;
            off += 12;
            let vlen = (info & 0xffff) as usize;
            let kind = (info >> 24) & 0x1f;
            let kind_flag = info >> 31 == 1;
            let mut members = Vec::new();
            match kind {
                KIND_INT | KIND_VAR | KIND_DECL_TAG => off += 4,
                KIND_PTR | KIND_FWD | KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT
                | KIND_FUNC | KIND_FLOAT | KIND_TYPE_TAG => {}
                KIND_ARRAY => off += 12,
                KIND_STRUCT | KIND_UNION => {
                    for _ in 0..vlen {
                        members.push((u32_at(off)?, u32_at(off + 4)?, u32_at(off + 8)?));
                        off += 12;
                    }
                }
                KIND_ENUM | KIND_FUNC_PROTO => {
                    for _ in 0..vlen {
                        members.push((u32_at(off)?, u32_at(off + 4)?, 0));
                        off += 8;
                    }
                }
                KIND_DATASEC | KIND_ENUM64 => off += 12 * vlen,
                _ => return Err(BtfError::Malformed("unknown type kind")),
            }
            types.push(Type {
                name,
                kind,
                kind_flag,
                size_or_type,
                members,
            });
        }

        let mut btf = Btf {
            strings,
            types,
            by_name: HashMap::new(),
        };
        for (id, ty) in btf.types.iter().enumerate().skip(1) {
            if ty.name != 0 {
                let name = btf.string(ty.name).to_owned();
                btf.by_name.entry((name, ty.kind)).or_insert(id as u32);
            }
        }
        Ok(btf)
    }

    fn string(&self, off: u32) -> &str {
        let rest = self.strings.get(off as usize..).unwrap_or_default();
        let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        std::str::from_utf8(&rest[..end]).unwrap_or("")
    }

    fn ty(&self, id: u32) -> Option<&Type> {
        self.types.get(id as usize)
    }

    /// Type id of `struct name`.
    pub fn struct_id(&self, name: &str) -> Option<u32> {
        self.by_name.get(&(name.to_owned(), KIND_STRUCT)).copied()
    }

    /// Type id of the function `name` (what a kfunc call names).
    pub fn func_id(&self, name: &str) -> Option<u32> {
        self.by_name.get(&(name.to_owned(), KIND_FUNC)).copied()
    }

    /// Whether `enum name` has the enumerator `value`: which helpers the kernel knows is
    /// `enum bpf_func_id` (`BPF_FUNC_task_pt_regs`, ...).
    pub fn enum_has(&self, name: &str, value: &str) -> bool {
        self.by_name
            .get(&(name.to_owned(), KIND_ENUM))
            .and_then(|&id| self.ty(id))
            .is_some_and(|t| t.members.iter().any(|&(n, _, _)| self.string(n) == value))
    }

    /// Size in bytes of `struct name`.
    pub fn struct_size(&self, name: &str) -> Result<u32, BtfError> {
        self.struct_id(name)
            .and_then(|id| self.ty(id))
            .map(|t| t.size_or_type)
            .ok_or_else(|| BtfError::NoStruct(name.to_owned()))
    }

    /// Byte offset of `member` in `struct name`, looking through anonymous structs and unions.
    pub fn member_offset(&self, name: &str, member: &str) -> Result<u32, BtfError> {
        let id = self
            .by_name
            .get(&(name.to_owned(), KIND_STRUCT))
            .copied()
            .ok_or_else(|| BtfError::NoStruct(name.to_owned()))?;
        self.find_member(id, member, 0, 0)
            .map(|bits| bits / 8)
            .ok_or_else(|| BtfError::NoMember(name.to_owned(), member.to_owned()))
    }

    fn find_member(&self, id: u32, member: &str, base_bits: u32, depth: u32) -> Option<u32> {
        let ty = self.ty(self.skip_modifiers(id))?;
        if depth > 8 || !matches!(ty.kind, KIND_STRUCT | KIND_UNION) {
            return None;
        }
        for &(name, mtype, offset) in &ty.members {
            // With kind_flag the top 8 bits hold a bitfield size.
            let bits = if ty.kind_flag {
                offset & 0x00ff_ffff
            } else {
                offset
            };
            if name == 0 {
                if let Some(found) = self.find_member(mtype, member, base_bits + bits, depth + 1) {
                    return Some(found);
                }
            } else if self.string(name) == member {
                return Some(base_bits + bits);
            }
        }
        None
    }

    fn skip_modifiers(&self, mut id: u32) -> u32 {
        for _ in 0..16 {
            match self.ty(id) {
                Some(t)
                    if matches!(
                        t.kind,
                        KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG
                    ) =>
                {
                    id = t.size_or_type;
                }
                _ => break,
            }
        }
        id
    }

    /// C spelling of a type, as tracefs `format` files print it (`const struct cred *`).
    pub fn type_name(&self, id: u32) -> String {
        self.type_name_depth(id, 0)
    }

    fn type_name_depth(&self, id: u32, depth: u32) -> String {
        let Some(ty) = self.ty(id) else {
            return "?".into();
        };
        if depth > 16 {
            return "?".into();
        }
        let name = self.string(ty.name);
        match ty.kind {
            0 => "void".into(),
            KIND_PTR => {
                let inner = self.type_name_depth(ty.size_or_type, depth + 1);
                if inner.ends_with('*') {
                    format!("{inner}*")
                } else {
                    format!("{inner} *")
                }
            }
            KIND_CONST => format!("const {}", self.type_name_depth(ty.size_or_type, depth + 1)),
            KIND_VOLATILE => {
                format!(
                    "volatile {}",
                    self.type_name_depth(ty.size_or_type, depth + 1)
                )
            }
            KIND_RESTRICT | KIND_TYPE_TAG => self.type_name_depth(ty.size_or_type, depth + 1),
            KIND_STRUCT => format!("struct {name}"),
            KIND_UNION => format!("union {name}"),
            KIND_ENUM | KIND_ENUM64 => format!("enum {name}"),
            KIND_FWD => {
                if ty.kind_flag {
                    format!("union {name}")
                } else {
                    format!("struct {name}")
                }
            }
            _ => name.to_owned(),
        }
    }

    /// Parameter types of a raw tracepoint (`btf_trace_<name>`), without the leading `void *`
    /// context argument: the order the raw tracepoint passes them in.
    pub fn raw_tracepoint_params(&self, tracepoint: &str) -> Result<Vec<String>, BtfError> {
        let typedef = format!("btf_trace_{tracepoint}");
        let no_proto = || BtfError::NoPrototype(typedef.clone());
        let id = *self
            .by_name
            .get(&(typedef.clone(), KIND_TYPEDEF))
            .ok_or_else(no_proto)?;
        let ptr = self.ty(id).ok_or_else(no_proto)?.size_or_type;
        let ptr = self
            .ty(ptr)
            .filter(|t| t.kind == KIND_PTR)
            .ok_or_else(no_proto)?;
        let proto = self
            .ty(ptr.size_or_type)
            .filter(|t| t.kind == KIND_FUNC_PROTO)
            .ok_or_else(no_proto)?;
        Ok(proto
            .members
            .iter()
            .skip(1)
            .map(|&(_, ty, _)| self.type_name(ty))
            .collect())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds a BTF blob from (name, info, size_or_type, extra u32s) records.
    pub(crate) struct Builder {
        strings: Vec<u8>,
        types: Vec<u8>,
        next_id: u32,
    }

    impl Builder {
        pub(crate) fn new() -> Self {
            Builder {
                strings: vec![0],
                types: Vec::new(),
                next_id: 1,
            }
        }

        pub(crate) fn str(&mut self, s: &str) -> u32 {
            let off = self.strings.len() as u32;
            self.strings.extend_from_slice(s.as_bytes());
            self.strings.push(0);
            off
        }

        pub(crate) fn add(
            &mut self,
            name: &str,
            kind: u32,
            vlen: u32,
            st: u32,
            extra: &[u32],
        ) -> u32 {
            let name = if name.is_empty() { 0 } else { self.str(name) };
            for v in [name, (kind << 24) | vlen, st].iter().chain(extra) {
                self.types.extend_from_slice(&v.to_le_bytes());
            }
            self.next_id += 1;
            self.next_id - 1
        }

        pub(crate) fn build(self) -> Vec<u8> {
            let mut out = Vec::new();
            out.extend_from_slice(&0xeb9fu16.to_le_bytes());
            out.push(1);
            out.push(0);
            for v in [
                24u32,
                0,
                self.types.len() as u32,
                self.types.len() as u32,
                self.strings.len() as u32,
            ] {
                out.extend_from_slice(&v.to_le_bytes());
            }
            out.extend_from_slice(&self.types);
            out.extend_from_slice(&self.strings);
            out
        }
    }

    fn sample() -> Btf {
        let mut b = Builder::new();
        let int = b.add("int", KIND_INT, 0, 4, &[32]); // 1
        let cred = b.add("cred", KIND_STRUCT, 0, 8, &[]); // 2 (members unused)
        let const_cred = b.add("", KIND_CONST, 0, cred, &[]); // 3
        let cred_ptr = b.add("", KIND_PTR, 0, const_cred, &[]); // 4
        // anonymous union { int a; int level; } at bit offset 64
        let a = b.str("a");
        let level = b.str("level");
        let anon = b.add("", KIND_UNION, 2, 4, &[a, int, 0, level, int, 0]); // 5
        let real_cred = b.str("real_cred");
        let pid = b.str("pid");
        b.add(
            "task_struct",
            KIND_STRUCT,
            3,
            64,
            &[pid, int, 0, real_cred, cred_ptr, 128 * 8, 0, anon, 64],
        ); // 6
        let void_ptr = b.add("", KIND_PTR, 0, 0, &[]); // 7
        let c = b.str("cred");
        let cap = b.str("cap");
        let proto = b.add(
            "",
            KIND_FUNC_PROTO,
            3,
            int,
            &[0, void_ptr, c, cred_ptr, cap, int],
        ); // 8
        let proto_ptr = b.add("", KIND_PTR, 0, proto, &[]); // 9
        b.add("btf_trace_cap_capable", KIND_TYPEDEF, 0, proto_ptr, &[]);
        let unspec = b.str("BPF_FUNC_unspec");
        let task_btf = b.str("BPF_FUNC_get_current_task_btf");
        b.add("bpf_func_id", KIND_ENUM, 2, 4, &[unspec, 0, task_btf, 158]);
        Btf::parse(&b.build()).unwrap()
    }

    #[test]
    fn finds_enumerators_and_struct_sizes() {
        let btf = sample();
        assert!(btf.enum_has("bpf_func_id", "BPF_FUNC_get_current_task_btf"));
        assert!(!btf.enum_has("bpf_func_id", "BPF_FUNC_task_pt_regs"));
        assert!(!btf.enum_has("bpf_cmd", "BPF_FUNC_get_current_task_btf"));
        assert_eq!(btf.struct_size("task_struct").unwrap(), 64);
        assert!(matches!(
            btf.struct_size("pt_regs"),
            Err(BtfError::NoStruct(..))
        ));
    }

    #[test]
    fn finds_member_offsets() {
        let btf = sample();
        assert_eq!(btf.member_offset("task_struct", "pid").unwrap(), 0);
        assert_eq!(btf.member_offset("task_struct", "real_cred").unwrap(), 128);
        // Through the anonymous union at byte 8.
        assert_eq!(btf.member_offset("task_struct", "level").unwrap(), 8);
        assert!(matches!(
            btf.member_offset("task_struct", "nope"),
            Err(BtfError::NoMember(..))
        ));
        assert!(matches!(
            btf.member_offset("mm_struct", "pgd"),
            Err(BtfError::NoStruct(..))
        ));
    }

    #[test]
    fn spells_types_like_tracefs() {
        let btf = sample();
        assert_eq!(btf.type_name(4), "const struct cred *");
        assert_eq!(btf.type_name(7), "void *");
        assert_eq!(
            btf.raw_tracepoint_params("cap_capable").unwrap(),
            ["const struct cred *", "int"]
        );
        assert!(btf.raw_tracepoint_params("nope").is_err());
    }

    #[test]
    fn rejects_garbage() {
        assert!(matches!(Btf::parse(b"hello"), Err(BtfError::Malformed(_))));
        assert!(matches!(Btf::parse(&[]), Err(BtfError::Malformed(_))));
        let mut blob = Builder::new().build();
        blob.truncate(20);
        assert!(Btf::parse(&blob).is_err());
    }
}
