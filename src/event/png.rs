//! The PNG checks a frame passes before it is accepted: a whole PNG (signature to IEND)
//! whose header gives sides the server takes, read without decoding any pixels.

use std::io::Cursor;

use image::ImageDecoder as _;
use image::codecs::png::PngDecoder;

use super::Refusal;

/// Largest accepted width or height of a frame.
pub const MAX_SIDE: u32 = 4096;

const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";
/// An empty IEND chunk: length, type and CRC. Every complete PNG ends with it.
const PNG_IEND: &[u8] = b"\0\0\0\0IEND\xae\x42\x60\x82";

/// Checks that `png` is a whole PNG and reads its dimensions from the header, without
/// decoding any pixels.
pub fn png_dimensions(png: &[u8]) -> Result<(u32, u32), Refusal> {
    if !png.starts_with(PNG_SIGNATURE) {
        return Err(Refusal::NotPng);
    }
    let (width, height) = PngDecoder::new(Cursor::new(png))
        .map_err(Refusal::InvalidPngHeader)?
        .dimensions();
    if !png.ends_with(PNG_IEND) {
        return Err(Refusal::TruncatedPng);
    }
    if !(1..=MAX_SIDE).contains(&width) || !(1..=MAX_SIDE).contains(&height) {
        return Err(Refusal::BadDimensions { width, height });
    }
    Ok((width, height))
}
