//! `ssl_stapling_file`: the file nginx reads at load with OpenSSL's
//! `BIO_new_file` and `d2i_OCSP_RESPONSE_bio`, checked as far as those
//! refuse it, with their messages. waypost staples nothing (the README
//! says so), but a configuration nginx refuses is refused here too.

use std::path::Path;

/// The file holds a DER `OCSPResponse` (`SEQUENCE { responseStatus
/// ENUMERATED, responseBytes [0] EXPLICIT ... OPTIONAL }`); else nginx's
/// `[emerg]` line.
pub fn check_response_file(file: &Path) -> Result<(), String> {
    let name = file.display();
    let data = match std::fs::read(file) {
        Ok(data) => data,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!(
                "BIO_new_file(\"{name}\") failed (SSL: error:80000002:system library::No such file or directory:calling fopen({name}, rb) error:10000080:BIO routines::no such file)"
            ))
        }
        // fopen() of a directory succeeds; its fread() fails.
        Err(e) if e.raw_os_error() == Some(21) => {
            return Err(format!(
                "d2i_OCSP_RESPONSE_bio(\"{name}\") failed (SSL: error:80000015:system library::Is a directory:calling fread() error:10080002:BIO routines::system lib error:0680008E:asn1 encoding routines::not enough data)"
            ))
        }
        Err(e) => {
            let errno = e.raw_os_error().unwrap_or(0);
            return Err(format!(
                "BIO_new_file(\"{name}\") failed (SSL: error:8{errno:07X}:system library::{}:calling fopen({name}, rb) error:10080002:BIO routines::system lib)",
                crate::http::proxy::strerror(&e)
            ));
        }
    };
    let refused = |why: &str| format!("d2i_OCSP_RESPONSE_bio(\"{name}\") failed (SSL: {why})");
    if data.is_empty() {
        // OpenSSL queues no error for an empty file.
        return Err(format!("d2i_OCSP_RESPONSE_bio(\"{name}\") failed"));
    }
    const SHORT: &str = "error:0680008E:asn1 encoding routines::not enough data";
    const WRONG_TAG: &str = "error:068000A8:asn1 encoding routines::wrong tag";
    const NESTED: &str = "error:0688010A:asn1 encoding routines::nested asn1 error";
    let Some((tag, body)) = element(&data) else {
        return Err(refused(SHORT));
    };
    if tag != 0x30 {
        return Err(refused(&format!("{WRONG_TAG} {NESTED}:Type=OCSP_RESPONSE")));
    }
    match element(body) {
        Some((0x0a, _)) => Ok(()),
        Some(_) => Err(refused(&format!(
            "{WRONG_TAG} {NESTED} {NESTED}:Field=responseStatus, Type=OCSP_RESPONSE"
        ))),
        None => Err(refused(SHORT)),
    }
}

/// A DER element at the start of `data`: its tag and contents, or `None`
/// when `data` ends before them.
fn element(data: &[u8]) -> Option<(u8, &[u8])> {
    let (&tag, rest) = data.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, &rest[n..])
    };
    rest.get(..len).map(|contents| (tag, contents))
}

#[cfg(test)]
mod tests {
    use super::element;

    #[test]
    fn der_elements() {
        assert_eq!(
            element(b"\x30\x03\x0a\x01\x01"),
            Some((0x30, &b"\x0a\x01\x01"[..]))
        );
        assert_eq!(element(b"\x30\x05\x0a\x01\x01"), None);
        assert_eq!(element(b"\x04\x81\x01x"), Some((0x04, &b"x"[..])));
        assert_eq!(element(b"\x04\x82\x00"), None);
        assert_eq!(element(b""), None);
    }
}
