//! tracefs: where it is mounted, and the record layout of a tracepoint from its `format` file.

use std::path::{Path, PathBuf};

/// One field of a tracepoint record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// C type as printed, e.g. `const struct cred *`.
    pub ty: String,
    pub name: String,
    pub offset: u32,
    pub size: u32,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FormatError {
    #[error("malformed tracepoint format line: {0}")]
    Malformed(String),
    #[error("tracepoint has no field `{0}`")]
    MissingField(String),
    #[error("tracepoint field `{name}` is {size} bytes, expected {expected}")]
    WrongSize {
        name: String,
        size: u32,
        expected: u32,
    },
}

/// Parses the `format` file of a tracepoint; common_* fields are skipped.
pub fn parse_format(text: &str) -> Result<Vec<Field>, FormatError> {
    let mut fields = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        let Some(rest) = line.strip_prefix("field:") else {
            continue;
        };
        let malformed = || FormatError::Malformed(line.to_owned());
        let mut parts = rest.split(';').map(str::trim);
        let decl = parts.next().ok_or_else(malformed)?;
        let mut offset = None;
        let mut size = None;
        for part in parts {
            if let Some(v) = part.strip_prefix("offset:") {
                offset = Some(v.trim().parse::<u32>().map_err(|_| malformed())?);
            } else if let Some(v) = part.strip_prefix("size:") {
                size = Some(v.trim().parse::<u32>().map_err(|_| malformed())?);
            }
        }
        // The declaration is `type name` or `type name[N]`; the name is the last identifier.
        let decl = decl.split('[').next().unwrap_or(decl).trim();
        let split = decl
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .ok_or_else(malformed)?;
        let (ty, name) = decl.split_at(split + 1);
        if name.is_empty() {
            return Err(malformed());
        }
        if name.starts_with("common_") {
            continue;
        }
        fields.push(Field {
            ty: ty.trim().to_owned(),
            name: name.to_owned(),
            offset: offset.ok_or_else(malformed)?,
            size: size.ok_or_else(malformed)?,
        });
    }
    Ok(fields)
}

/// Offset of a field, checking its size.
pub fn field_offset(fields: &[Field], name: &str, size: u32) -> Result<u32, FormatError> {
    let field = fields
        .iter()
        .find(|f| f.name == name)
        .ok_or_else(|| FormatError::MissingField(name.to_owned()))?;
    if field.size != size {
        return Err(FormatError::WrongSize {
            name: name.to_owned(),
            size: field.size,
            expected: size,
        });
    }
    Ok(field.offset)
}

/// Positions of the record's fields among the raw tracepoint's arguments: each field takes the
/// first unused parameter of the same C type, so same-typed fields keep their relative order.
/// Without a BTF prototype the record order is assumed.
pub fn raw_positions(fields: &[Field], params: Option<&[String]>) -> Vec<(String, u32)> {
    let Some(params) = params else {
        return fields
            .iter()
            .enumerate()
            .map(|(i, f)| (f.name.clone(), i as u32))
            .collect();
    };
    let normalize = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut used = vec![false; params.len()];
    let mut out = Vec::new();
    for field in fields {
        let ty = normalize(&field.ty);
        if let Some(i) = (0..params.len()).find(|&i| !used[i] && normalize(&params[i]) == ty) {
            used[i] = true;
            out.push((field.name.clone(), i as u32));
        }
    }
    out
}

/// The tracefs mount point, mounting it if needed (as `perf` and `bpftrace` do); else why
/// there is none to read.
pub fn tracefs_root() -> Result<PathBuf, String> {
    for candidate in ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"] {
        match std::fs::metadata(Path::new(candidate).join("events")) {
            Ok(m) if m.is_dir() => return Ok(PathBuf::from(candidate)),
            // Mounted, but not ours to read: mounting again would not help.
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                return Err(format!(
                    "tracefs is mounted at {candidate} but cap-trace cannot read it ({e}): run cap-trace as root"
                ));
            }
            _ => {}
        }
    }
    let target = c"/sys/kernel/tracing";
    // SAFETY: plain mount(2) with static NUL-terminated strings.
    let rc = unsafe {
        libc::mount(
            c"nodev".as_ptr(),
            target.as_ptr(),
            c"tracefs".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    let why = if rc == 0 {
        if Path::new("/sys/kernel/tracing/events").is_dir() {
            return Ok(PathBuf::from("/sys/kernel/tracing"));
        }
        "it has no events directory".to_owned()
    } else {
        std::io::Error::last_os_error().to_string()
    };
    Err(format!(
        "tracefs is not mounted and cannot be mounted ({why}): mount it with `mount -t tracefs nodev /sys/kernel/tracing`"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Linux 6.18.
    const CAP_CAPABLE: &str = "name: cap_capable
ID: 2073
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:const struct cred * cred;\toffset:8;\tsize:8;\tsigned:0;
\tfield:struct user_namespace * target_ns;\toffset:16;\tsize:8;\tsigned:0;
\tfield:const struct user_namespace * capable_ns;\toffset:24;\tsize:8;\tsigned:0;
\tfield:int cap;\toffset:32;\tsize:4;\tsigned:1;
\tfield:int ret;\toffset:36;\tsize:4;\tsigned:1;

print fmt: \"cred %p, target_ns %p, capable_ns %p, cap %d, ret %d\", REC->cred, REC->target_ns, REC->capable_ns, REC->cap, REC->ret
";

    #[test]
    fn parses_cap_capable() {
        let fields = parse_format(CAP_CAPABLE).unwrap();
        let names: Vec<_> = fields.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["cred", "target_ns", "capable_ns", "cap", "ret"]);
        assert_eq!(fields[0].ty, "const struct cred *");
        assert_eq!(field_offset(&fields, "cred", 8), Ok(8));
        assert_eq!(field_offset(&fields, "target_ns", 8), Ok(16));
        assert_eq!(field_offset(&fields, "cap", 4), Ok(32));
        assert_eq!(field_offset(&fields, "ret", 4), Ok(36));
    }

    #[test]
    fn reports_missing_and_resized_fields() {
        let fields = parse_format(CAP_CAPABLE).unwrap();
        assert_eq!(
            field_offset(&fields, "opts", 4),
            Err(FormatError::MissingField("opts".into()))
        );
        assert!(matches!(
            field_offset(&fields, "cap", 8),
            Err(FormatError::WrongSize { .. })
        ));
    }

    #[test]
    fn parses_arrays_and_rejects_garbage() {
        let text = "\tfield:char comm[16];\toffset:8;\tsize:16;\tsigned:0;\n";
        let fields = parse_format(text).unwrap();
        assert_eq!(fields[0].name, "comm");
        assert_eq!(fields[0].ty, "char");
        assert!(parse_format("\tfield:int x;\toffset:zz;\tsize:4;\n").is_err());
        assert!(parse_format("\tfield:int x;\tsize:4;\n").is_err());
    }

    #[test]
    fn raw_positions_follow_the_prototype() {
        let fields = parse_format(CAP_CAPABLE).unwrap();
        let params: Vec<String> = [
            "const struct cred *",
            "struct user_namespace *",
            "const struct user_namespace *",
            "int",
            "int",
        ]
        .map(String::from)
        .to_vec();
        let pos = raw_positions(&fields, Some(&params));
        assert_eq!(
            pos,
            [
                ("cred".into(), 0),
                ("target_ns".into(), 1),
                ("capable_ns".into(), 2),
                ("cap".into(), 3),
                ("ret".into(), 4)
            ]
        );
        // A prototype in another order than the record.
        let swapped: Vec<String> = ["int", "const struct cred *", "int"]
            .map(String::from)
            .to_vec();
        let pos = raw_positions(&fields, Some(&swapped));
        assert_eq!(
            pos,
            [("cred".into(), 1), ("cap".into(), 0), ("ret".into(), 2)]
        );
        // No BTF: record order.
        assert_eq!(raw_positions(&fields, None)[3], ("cap".into(), 3));
    }
}
