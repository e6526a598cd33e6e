//! Names of errno values, for the outcomes of syscalls.

/// Name of an errno value, for outcomes.
pub fn errno_name(errno: i32) -> String {
    let name = match errno {
        1 => "EPERM",
        2 => "ENOENT",
        3 => "ESRCH",
        4 => "EINTR",
        5 => "EIO",
        9 => "EBADF",
        11 => "EAGAIN",
        12 => "ENOMEM",
        13 => "EACCES",
        14 => "EFAULT",
        16 => "EBUSY",
        17 => "EEXIST",
        18 => "EXDEV",
        19 => "ENODEV",
        20 => "ENOTDIR",
        21 => "EISDIR",
        22 => "EINVAL",
        24 => "EMFILE",
        25 => "ENOTTY",
        26 => "ETXTBSY",
        28 => "ENOSPC",
        30 => "EROFS",
        38 => "ENOSYS",
        39 => "ENOTEMPTY",
        61 => "ENODATA",
        95 => "EOPNOTSUPP",
        97 => "EAFNOSUPPORT",
        98 => "EADDRINUSE",
        99 => "EADDRNOTAVAIL",
        _ => return format!("E{errno}"),
    };
    name.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_errnos() {
        assert_eq!(errno_name(1), "EPERM");
        assert_eq!(errno_name(13), "EACCES");
        assert_eq!(errno_name(200), "E200");
    }
}
