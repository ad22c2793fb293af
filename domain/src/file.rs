//! File attachments: sanitised names, kinds and the metadata a message carries.

use crate::{uuid_id, Timestamp};

uuid_id!(
    /// Identifies stored bytes; the storage key is derived from this id, never from a client's name.
    FileId
);

/// Images are shown inline and expire sooner; everything else is a plain file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileKind {
    Image,
    File,
}

impl FileKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Image => "image",
            Self::File => "file",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "image" => Some(Self::Image),
            "file" => Some(Self::File),
            _ => None,
        }
    }
}

/// A display name for a file: path components and control characters stripped, at most 255 bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileName(String);

impl FileName {
    pub const MAX_BYTES: usize = 255;
    const FALLBACK: &'static str = "file";

    /// Sanitises any client-supplied name; never fails, falling back to `file` when nothing is left.
    pub fn sanitize(raw: &str) -> Self {
        let last = raw.rsplit(['/', '\\']).next().unwrap_or_default();
        let cleaned: String = last.chars().filter(|&c| !c.is_control() && !crate::is_format_control(c)).collect();
        let cleaned = cleaned.trim();
        let cleaned = match cleaned {
            "" | "." | ".." => Self::FALLBACK,
            other => other,
        };
        let mut end = cleaned.len().min(Self::MAX_BYTES);
        while !cleaned.is_char_boundary(end) {
            end -= 1;
        }
        Self(cleaned[..end].to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What a message says about an attached file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileMeta {
    pub id: FileId,
    pub name: FileName,
    pub size: u64,
    pub content_type: String,
    pub kind: FileKind,
    pub expires_at: Timestamp,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn bidi_overrides_and_other_format_characters_are_stripped_so_a_name_cannot_lie() {
        assert_eq!(FileName::sanitize("invoice\u{202E}gpj.exe").as_str(), "invoicegpj.exe");
        assert_eq!(FileName::sanitize("\u{2067}report\u{2069}\u{200B}.pdf\u{FEFF}").as_str(), "report.pdf");
        assert_eq!(FileName::sanitize("\u{202E}\u{200F}").as_str(), "file", "nothing visible is left");
        assert_eq!(FileName::sanitize("family 👨\u{200D}👩.png").as_str(), "family 👨\u{200D}👩.png", "ZWJ stays");
    }

    #[test]
    fn path_components_are_stripped() {
        assert_eq!(FileName::sanitize("../../etc/passwd").as_str(), "passwd");
        assert_eq!(FileName::sanitize("/abs/path/photo.png").as_str(), "photo.png");
        assert_eq!(FileName::sanitize("C:\\Users\\x\\doc.pdf").as_str(), "doc.pdf");
    }

    #[test]
    fn empty_and_dot_names_fall_back_to_file() {
        assert_eq!(FileName::sanitize("").as_str(), "file");
        assert_eq!(FileName::sanitize("dir/..").as_str(), "file");
        assert_eq!(FileName::sanitize("\u{0}\u{1}").as_str(), "file");
    }

    #[test]
    fn control_characters_are_removed() {
        assert_eq!(FileName::sanitize("a\u{0}b\nc.txt").as_str(), "abc.txt");
    }

    #[test]
    fn long_names_are_cut_to_255_bytes_on_a_character_boundary() {
        let name = FileName::sanitize(&"é".repeat(1000));
        assert!(name.as_str().len() <= 255);
        assert!(name.as_str().chars().all(|c| c == 'é'));
    }

    proptest! {
        #[test]
        fn sanitized_names_are_single_clean_components(raw in "\\PC{0,300}|[./\\\\\\x00a-z]{0,30}") {
            let name = FileName::sanitize(&raw);
            let s = name.as_str();
            prop_assert!(!s.is_empty() && s.len() <= 255);
            prop_assert!(!s.contains('/') && !s.contains('\\'));
            prop_assert!(s != "." && s != "..");
            prop_assert!(!s.chars().any(char::is_control));
        }
    }
}

/// Recognises the raster image formats we show inline, from their first bytes.
/// Anything else is a plain file, whatever the client claimed.
pub fn sniff_image(head: &[u8]) -> Option<&'static str> {
    if head.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some("image/jpeg")
    } else if head.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if head.starts_with(b"GIF87a") || head.starts_with(b"GIF89a") {
        Some("image/gif")
    } else if head.len() >= 12 && head.starts_with(b"RIFF") && &head[8..12] == b"WEBP" {
        Some("image/webp")
    } else {
        None
    }
}

/// The type of a common document, archive or media file from its first bytes (and, for the ZIP
/// family, its name's extension), for a file's metadata: clients show an icon or a viewer by it.
/// Such files are still served as `application/octet-stream` attachments, never rendered inline.
pub fn sniff_document(head: &[u8], name: &FileName) -> Option<&'static str> {
    let extension = name.as_str().rsplit_once('.').map(|(_, ext)| ext.to_ascii_lowercase());
    if head.starts_with(b"%PDF-") {
        Some("application/pdf")
    } else if head.starts_with(b"PK\x03\x04") {
        // Office documents are ZIP files; only the name tells them apart.
        Some(match extension.as_deref() {
            Some("docx") => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
            Some("xlsx") => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            Some("pptx") => "application/vnd.openxmlformats-officedocument.presentationml.presentation",
            Some("odt") => "application/vnd.oasis.opendocument.text",
            Some("ods") => "application/vnd.oasis.opendocument.spreadsheet",
            _ => "application/zip",
        })
    } else if head.starts_with(&[0x1F, 0x8B]) {
        Some("application/gzip")
    } else if head.starts_with(b"7z\xBC\xAF\x27\x1C") {
        Some("application/x-7z-compressed")
    } else if head.len() >= 12 && &head[4..8] == b"ftyp" {
        Some("video/mp4")
    } else if head.starts_with(b"ID3") {
        Some("audio/mpeg")
    } else if head.starts_with(b"OggS") {
        Some("audio/ogg")
    } else if head.len() >= 12 && head.starts_with(b"RIFF") && &head[8..12] == b"WAVE" {
        Some("audio/wav")
    } else {
        None
    }
}

/// How many leading bytes `sniff_image` needs to decide.
pub const SNIFF_BYTES: usize = 12;

#[cfg(test)]
mod sniff_tests {
    use super::*;

    #[test]
    fn recognises_the_four_image_formats_by_their_magic_bytes() {
        assert_eq!(sniff_image(&[0xFF, 0xD8, 0xFF, 0xE0]), Some("image/jpeg"));
        assert_eq!(sniff_image(b"\x89PNG\r\n\x1a\n...."), Some("image/png"));
        assert_eq!(sniff_image(b"GIF89a......"), Some("image/gif"));
        assert_eq!(sniff_image(b"RIFF\0\0\0\0WEBPVP8 "), Some("image/webp"));
    }

    #[test]
    fn common_documents_are_recognised_by_their_magic_bytes_and_zip_kinds_by_their_name() {
        let name = |n: &str| FileName::sanitize(n);
        assert_eq!(sniff_document(b"%PDF-1.7\n%....", &name("invoice.bin")), Some("application/pdf"));
        assert_eq!(
            sniff_document(b"PK\x03\x04\x14\0\0\0\0\0\0\0", &name("Report.DOCX")),
            Some("application/vnd.openxmlformats-officedocument.wordprocessingml.document")
        );
        assert_eq!(sniff_document(b"PK\x03\x04\x14\0\0\0\0\0\0\0", &name("photos")), Some("application/zip"));
        assert_eq!(sniff_document(&[0x1F, 0x8B, 8, 0], &name("logs.gz")), Some("application/gzip"));
        assert_eq!(sniff_document(b"\0\0\0\x18ftypmp42", &name("clip")), Some("video/mp4"));
    }

    #[test]
    fn a_name_alone_never_makes_a_document() {
        assert_eq!(sniff_document(b"just some text", &FileName::sanitize("fake.pdf")), None);
    }

    #[test]
    fn html_or_svg_is_never_an_image() {
        assert_eq!(sniff_image(b"<svg xmlns='http://www.w3.org/2000/svg'>"), None);
        assert_eq!(sniff_image(b"<html><script>"), None);
        assert_eq!(sniff_image(b""), None);
    }
}
