//! The tag byte before each stored line (see the parent module).

/// How a stored line is tagged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LineTag {
    /// The line starts a unit (a record), rather than continue the one before.
    pub starts_unit: bool,
    /// The line came from a push, not from PowerJob's log.
    pub pushed: bool,
}

impl LineTag {
    pub(super) fn byte(self) -> u8 {
        match (self.starts_unit, self.pushed) {
            (true, false) => b'u',
            (false, false) => b'c',
            (true, true) => b'p',
            (false, true) => b'q',
        }
    }

    pub(super) fn of(byte: u8) -> Option<LineTag> {
        let (starts_unit, pushed) = match byte {
            b'u' => (true, false),
            b'c' => (false, false),
            b'p' => (true, true),
            b'q' => (false, true),
            _ => return None,
        };
        Some(LineTag { starts_unit, pushed })
    }
}
