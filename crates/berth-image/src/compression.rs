//! The compressions an image file may use, recognised by their magic bytes.

use std::io::{Read, Write};

/// The most memory an xz decoder may take (xz -9 needs 65 MiB).
const XZ_MEMORY: u64 = 256 << 20;

/// A compression of an image file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Xz,
    Zstd,
    Bzip2,
}

impl Compression {
    /// Recognises the compression from the first bytes of a file. Anything that is not one
    /// of the known compressed formats is taken as uncompressed.
    pub fn detect(head: &[u8]) -> Compression {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
            Compression::Xz
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else if head.starts_with(b"BZh") {
            Compression::Bzip2
        } else {
            Compression::None
        }
    }

    /// A reader that decompresses `inner`.
    pub fn reader<'a, R: Read + 'a>(self, inner: R) -> std::io::Result<Box<dyn Read + 'a>> {
        Ok(match self {
            Compression::None => Box::new(inner),
            Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(inner)),
            Compression::Xz => {
                // A bounded decoder: an archive declaring a huge dictionary is refused
                // rather than allocated.
                let stream = liblzma::stream::Stream::new_stream_decoder(
                    XZ_MEMORY,
                    liblzma::stream::CONCATENATED,
                )
                .map_err(std::io::Error::other)?;
                Box::new(liblzma::read::XzDecoder::new_stream(inner, stream))
            }
            Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(inner)?),
            Compression::Bzip2 => Box::new(bzip2::read::MultiBzDecoder::new(inner)),
        })
    }

    /// The compression an API names (`backups.compression_algorithm`, a backup's
    /// `compression_algorithm`): `none`, `gzip`, `zstd`, `xz`, `bzip2`.
    pub fn parse(name: &str) -> Option<Compression> {
        Some(match name {
            "none" => Compression::None,
            "gzip" => Compression::Gzip,
            "zstd" => Compression::Zstd,
            "xz" => Compression::Xz,
            "bzip2" => Compression::Bzip2,
            _ => return None,
        })
    }

    /// A writer that compresses into `inner`; [`Encoder::finish`] ends the stream.
    pub fn writer<W: Write>(self, inner: W) -> std::io::Result<Encoder<W>> {
        Ok(match self {
            Compression::None => Encoder::None(inner),
            Compression::Gzip => Encoder::Gzip(flate2::write::GzEncoder::new(
                inner,
                flate2::Compression::fast(),
            )),
            Compression::Xz => Encoder::Xz(liblzma::write::XzEncoder::new(inner, 1)),
            Compression::Zstd => Encoder::Zstd(zstd::stream::write::Encoder::new(inner, 1)?),
            Compression::Bzip2 => Encoder::Bzip2(bzip2::write::BzEncoder::new(
                inner,
                bzip2::Compression::fast(),
            )),
        })
    }

    /// The usual file name suffix of a tarball in this compression.
    pub fn tar_suffix(self) -> &'static str {
        match self {
            Compression::None => ".tar",
            Compression::Gzip => ".tar.gz",
            Compression::Xz => ".tar.xz",
            Compression::Zstd => ".tar.zst",
            Compression::Bzip2 => ".tar.bz2",
        }
    }
}

/// A compressing writer (see [`Compression::writer`]).
pub enum Encoder<W: Write> {
    None(W),
    Gzip(flate2::write::GzEncoder<W>),
    Xz(liblzma::write::XzEncoder<W>),
    Zstd(zstd::stream::write::Encoder<'static, W>),
    Bzip2(bzip2::write::BzEncoder<W>),
}

impl<W: Write> Encoder<W> {
    /// Ends the compressed stream and gives back the inner writer.
    pub fn finish(self) -> std::io::Result<W> {
        match self {
            Encoder::None(w) => Ok(w),
            Encoder::Gzip(e) => e.finish(),
            Encoder::Xz(e) => e.finish(),
            Encoder::Zstd(e) => e.finish(),
            Encoder::Bzip2(e) => e.finish(),
        }
    }
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Encoder::None(w) => w.write(buf),
            Encoder::Gzip(e) => e.write(buf),
            Encoder::Xz(e) => e.write(buf),
            Encoder::Zstd(e) => e.write(buf),
            Encoder::Bzip2(e) => e.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Encoder::None(w) => w.flush(),
            Encoder::Gzip(e) => e.flush(),
            Encoder::Xz(e) => e.flush(),
            Encoder::Zstd(e) => e.flush(),
            Encoder::Bzip2(e) => e.flush(),
        }
    }
}

impl<W: Write> std::fmt::Debug for Encoder<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Encoder")
    }
}

/// Opens `path` and returns a decompressing reader over it.
pub fn open(path: &std::path::Path) -> std::io::Result<Box<dyn Read>> {
    let mut f = std::fs::File::open(path)?;
    let mut head = [0u8; 6];
    let n = read_up_to(&mut f, &mut head)?;
    let kind = Compression::detect(&head[..n]);
    let f = std::io::Cursor::new(head[..n].to_vec()).chain(f);
    kind.reader(f)
}

fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn detects_and_round_trips_every_compression() {
        let data = b"hello image".repeat(100);
        let gz = {
            let mut e = flate2::write::GzEncoder::new(vec![], flate2::Compression::fast());
            e.write_all(&data).unwrap();
            e.finish().unwrap()
        };
        let xz = {
            let mut e = liblzma::write::XzEncoder::new(vec![], 1);
            e.write_all(&data).unwrap();
            e.finish().unwrap()
        };
        let zst = zstd::encode_all(&data[..], 1).unwrap();
        let bz = {
            let mut e = bzip2::write::BzEncoder::new(vec![], bzip2::Compression::fast());
            e.write_all(&data).unwrap();
            e.finish().unwrap()
        };
        for (bytes, kind) in [
            (gz, Compression::Gzip),
            (xz, Compression::Xz),
            (zst, Compression::Zstd),
            (bz, Compression::Bzip2),
            (data.clone(), Compression::None),
        ] {
            assert_eq!(Compression::detect(&bytes), kind);
            let mut out = vec![];
            kind.reader(&bytes[..])
                .unwrap()
                .read_to_end(&mut out)
                .unwrap();
            assert_eq!(out, data, "{kind:?}");
        }
        for name in ["none", "gzip", "zstd", "xz", "bzip2"] {
            let kind = Compression::parse(name).unwrap();
            let mut w = kind.writer(Vec::new()).unwrap();
            w.write_all(&data).unwrap();
            let bytes = w.finish().unwrap();
            assert_eq!(Compression::detect(&bytes), kind, "{name}");
            let mut out = vec![];
            kind.reader(&bytes[..])
                .unwrap()
                .read_to_end(&mut out)
                .unwrap();
            assert_eq!(out, data, "{name}");
        }
        assert_eq!(Compression::parse("lz4"), None);
    }
}
