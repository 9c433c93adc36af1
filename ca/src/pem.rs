//! PEM reading and writing (RFC 7468), strict enough for CSRs and lenient with text around blocks,
//! as files written by `openssl x509 -text` have.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// One `-----BEGIN <label>----- ... -----END <label>-----` block, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Block {
    pub label: String,
    pub der: Vec<u8>,
}

/// Every PEM block in `text`, in order. Text outside blocks is ignored; inside a block only base64
/// (and whitespace) is allowed, and every block must be closed with the same label it was opened with.
pub(crate) fn parse(text: &str) -> Result<Vec<Block>, String> {
    let mut blocks = Vec::new();
    let mut open: Option<(String, String, usize)> = None; // label, base64, line number
    for (n, raw_line) in text.lines().enumerate() {
        let line = raw_line.trim();
        match &mut open {
            None => {
                if let Some(label) = boundary(line, "-----BEGIN ") {
                    open = Some((label.to_string(), String::new(), n + 1));
                } else if line.starts_with("-----END ") {
                    return Err(format!("line {}: END without BEGIN", n + 1));
                }
            }
            Some((label, b64, start)) => {
                if let Some(end) = boundary(line, "-----END ") {
                    if end != label {
                        return Err(format!(
                            "line {}: block opened as {label:?} on line {start} is closed as {end:?}",
                            n + 1
                        ));
                    }
                    let der = STANDARD.decode(b64.as_bytes()).map_err(|e| {
                        format!("{label} block from line {start}: bad base64 ({e})")
                    })?;
                    blocks.push(Block {
                        label: std::mem::take(label),
                        der,
                    });
                    open = None;
                } else if line.starts_with("-----") {
                    return Err(format!(
                        "line {}: unexpected {line:?} inside {label} block",
                        n + 1
                    ));
                } else if line.contains(':') {
                    // RFC 1421 headers (Proc-Type, DEK-Info) mean an encrypted legacy key.
                    return Err(format!(
                        "line {}: {label} block has headers ({line:?}); encrypted PEM is not supported",
                        n + 1
                    ));
                } else {
                    b64.extend(line.chars().filter(|c| !c.is_whitespace()));
                }
            }
        }
    }
    if let Some((label, _, start)) = open {
        return Err(format!(
            "{label} block from line {start} is not closed (file cut short?)"
        ));
    }
    Ok(blocks)
}

fn boundary<'a>(line: &'a str, prefix: &str) -> Option<&'a str> {
    line.strip_prefix(prefix)?.strip_suffix("-----")
}

/// PEM text for `der` under `label`: 64-column base64, ending with a newline.
pub(crate) fn encode(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = String::with_capacity(b64.len() + b64.len() / 64 + 2 * label.len() + 40);
    out.push_str("-----BEGIN ");
    out.push_str(label);
    out.push_str("-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        // base64 output is ASCII, so every chunk is valid UTF-8.
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END ");
    out.push_str(label);
    out.push_str("-----\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_surrounding_text() {
        let der: Vec<u8> = (0u8..=200).collect();
        let pem = encode("CERTIFICATE", &der);
        assert!(pem.ends_with("-----END CERTIFICATE-----\n"));
        let text = format!("Certificate:\n    Data: ...\n{pem}\ntrailing words\n{pem}");
        let blocks = parse(&text).unwrap();
        assert_eq!(blocks.len(), 2);
        assert_eq!(blocks[0].label, "CERTIFICATE");
        assert_eq!(blocks[0].der, der);
        assert_eq!(parse("no pem here").unwrap(), vec![]);
    }

    #[test]
    fn refuses_broken_blocks() {
        let pem = encode("CERTIFICATE", b"abc");
        let cut = &pem[..pem.len() / 2];
        assert!(parse(cut).unwrap_err().contains("not closed"));
        let cut_in_end_line = &pem[..pem.len() - 10];
        assert!(
            parse(cut_in_end_line)
                .unwrap_err()
                .contains("inside CERTIFICATE block")
        );
        let mismatched = pem.replace("END CERTIFICATE", "END PRIVATE KEY");
        assert!(parse(&mismatched).unwrap_err().contains("closed as"));
        let garbage = pem.replace("YWJj", "Y*Jj");
        assert!(parse(&garbage).unwrap_err().contains("bad base64"));
        assert!(parse("-----END X-----\n").is_err());
        let encrypted = "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nAAAA\n-----END RSA PRIVATE KEY-----\n";
        assert!(parse(encrypted).unwrap_err().contains("encrypted"));
    }
}
