//! Camera-like and screen-like PNG frames made from nothing: a gradient room, a swaying
//! head and shoulders, something moving behind, sensor noise, and a caption in a bitmap font
//! so that a person can tell frames apart.
//!
//! Everything is a pure function of the [`Look`] and the frame number, so a test can render
//! again exactly the bytes the simulator sent.

use std::f32::consts::TAU;
use std::io::Cursor;

use font8x8::UnicodeFonts as _;
use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use image::{ExtendedColorType, ImageEncoder as _, Rgb, RgbImage};
use rand::rngs::Xoshiro256PlusPlus;
use rand::{Rng as _, SeedableRng as _};

use crate::frame::StreamKind;

/// Largest amplitude of the per-channel sensor noise of webcam frames, in 8-bit levels.
/// Real webcam PNGs are large because of such noise: this amplitude makes a 640x360 frame
/// 333 KB (the unit test below keeps it within 200-400 KB). Screens get none: like real
/// slides, they compress to a few kilobytes.
pub const WEBCAM_NOISE: u8 = 4;

/// What one participant's stream looks like.
#[derive(Debug, Clone, PartialEq)]
pub struct Look {
    pub name: String,
    pub kind: StreamKind,
    pub width: u32,
    pub height: u32,
    /// Varies colours and motion between participants.
    pub seed: u64,
}

/// Renders frame `n` of a stream as PNG bytes, with `caption` (for example the frame
/// number and time) written in its corner.
pub fn render(look: &Look, n: u64, caption: &str) -> Vec<u8> {
    let mut image = RgbImage::new(look.width, look.height);
    let palette = Palette::new(look.seed);
    match look.kind {
        StreamKind::Webcam => {
            paint_webcam(&mut image, &palette, look.seed, n);
            add_noise(&mut image, look.seed, n, WEBCAM_NOISE);
        }
        StreamKind::Screenshare => paint_screen(&mut image, &palette, n),
    }
    let scale = text_scale(look.height);
    let margin = 4 * scale;
    let label = match look.kind {
        StreamKind::Webcam => look.name.clone(),
        StreamKind::Screenshare => format!("{} - screen", look.name),
    };
    // A name tag bottom left, like a meeting app's; the caption top left.
    let tag_y = look.height.saturating_sub(margin + 8 * scale + 2 * scale);
    draw_label(&mut image, margin, tag_y, scale, &label);
    draw_label(&mut image, margin, margin, scale, caption);
    encode(&image)
}

/// Text is 8 px glyphs scaled so that it stays readable at any resolution: x2 at 360p.
fn text_scale(height: u32) -> u32 {
    (height / 180).clamp(1, 8)
}

fn encode(image: &RgbImage) -> Vec<u8> {
    let mut png = Vec::with_capacity(image.as_raw().len() / 2);
    PngEncoder::new_with_quality(
        Cursor::new(&mut png),
        CompressionType::Fast,
        FilterType::Adaptive,
    )
    .write_image(
        image.as_raw(),
        image.width(),
        image.height(),
        ExtendedColorType::Rgb8,
    )
    .expect("encoding a PNG into memory cannot fail");
    png
}

/// The colours of one participant's room and clothes, chosen from the seed.
struct Palette {
    wall: [f32; 3],
    shadow: [f32; 3],
    skin: [f32; 3],
    shirt: [f32; 3],
    accent: [f32; 3],
}

impl Palette {
    fn new(seed: u64) -> Self {
        // Golden-ratio steps spread hues of consecutive seeds around the wheel.
        let hue = (seed as f32 * 0.618_034).fract();
        const SKIN: [[f32; 3]; 4] = [
            [224.0, 172.0, 140.0],
            [198.0, 134.0, 96.0],
            [141.0, 85.0, 54.0],
            [238.0, 198.0, 170.0],
        ];
        Palette {
            wall: hsv(hue, 0.25, 0.80),
            shadow: hsv(hue, 0.40, 0.35),
            skin: SKIN[(seed % 4) as usize],
            shirt: hsv((hue + 0.5).fract(), 0.55, 0.55),
            accent: hsv((hue + 0.25).fract(), 0.80, 0.90),
        }
    }
}

fn hsv(h: f32, s: f32, v: f32) -> [f32; 3] {
    let f = |n: f32| {
        let k = (n + h * 6.0) % 6.0;
        v - v * s * k.min(4.0 - k).clamp(0.0, 1.0)
    };
    [f(5.0) * 255.0, f(3.0) * 255.0, f(1.0) * 255.0]
}

fn mix(a: [f32; 3], b: [f32; 3], t: f32) -> [f32; 3] {
    [
        a[0] + (b[0] - a[0]) * t,
        a[1] + (b[1] - a[1]) * t,
        a[2] + (b[2] - a[2]) * t,
    ]
}

fn scaled(c: [f32; 3], k: f32) -> [f32; 3] {
    [c[0] * k, c[1] * k, c[2] * k]
}

fn pixel(c: [f32; 3]) -> Rgb<u8> {
    Rgb(c.map(|v| v.clamp(0.0, 255.0) as u8))
}

/// Inside the ellipse centred at (cx, cy) with radii (rx, ry): the squared normalised distance.
fn ellipse(x: f32, y: f32, cx: f32, cy: f32, rx: f32, ry: f32) -> f32 {
    let (dx, dy) = ((x - cx) / rx, (y - cy) / ry);
    dx * dx + dy * dy
}

/// A room lit from one side, a person swaying in front, and a lamp drifting behind them.
fn paint_webcam(image: &mut RgbImage, palette: &Palette, seed: u64, n: u64) {
    let (w, h) = (image.width() as f32, image.height() as f32);
    let t = n as f32;
    let phase = (seed % 97) as f32;
    let sway = (t * 0.45 + phase).sin() * w * 0.04;
    let nod = (t * 0.9 + phase).sin() * h * 0.012;
    let (head_x, head_y) = (w * 0.5 + sway, h * 0.42 + nod);
    let (head_rx, head_ry) = (h * 0.15, h * 0.2);
    let (body_x, body_y, body_rx, body_ry) = (w * 0.5 + sway * 0.6, h * 1.08, w * 0.27, h * 0.45);
    let orbit = t * TAU / 24.0 + phase;
    let (lamp_x, lamp_y, lamp_r) = (
        w * 0.82 + orbit.cos() * w * 0.08,
        h * 0.24 + orbit.sin() * h * 0.10,
        h * 0.06,
    );
    for (x, y, out) in image.enumerate_pixels_mut() {
        let (x, y) = (x as f32, y as f32);
        // The wall: lighter towards the window on the left, darker towards the floor.
        let shade = 0.35 * (x / w) + 0.45 * (y / h);
        let mut colour = mix(palette.wall, palette.shadow, shade);
        let glow = ellipse(x, y, lamp_x, lamp_y, lamp_r * 3.0, lamp_r * 3.0);
        if glow < 1.0 {
            colour = mix(colour, [255.0, 244.0, 214.0], (1.0 - glow) * 0.5);
        }
        if ellipse(x, y, lamp_x, lamp_y, lamp_r, lamp_r) < 1.0 {
            colour = palette.accent;
        }
        let body = ellipse(x, y, body_x, body_y, body_rx, body_ry);
        let head = ellipse(x, y, head_x, head_y, head_rx, head_ry);
        if body < 1.0 {
            // Lit from the left: the right side of the body is in shadow.
            let side = ((x - body_x) / body_rx).clamp(-1.0, 1.0);
            colour = scaled(palette.shirt, 1.0 - 0.25 * side - 0.15 * body);
        }
        if head < 1.0 {
            let side = ((x - head_x) / head_rx).clamp(-1.0, 1.0);
            colour = scaled(palette.skin, 1.05 - 0.2 * side - 0.15 * head);
            // Hair on top of the head.
            if y < head_y - head_ry * 0.45 && head > 0.25 {
                colour = scaled(palette.shadow, 0.5);
            }
        }
        *out = pixel(colour);
    }
}

/// A slide: a title bar, lines of "text", a bar chart that changes, and a moving pointer.
fn paint_screen(image: &mut RgbImage, palette: &Palette, n: u64) {
    let (w, h) = (image.width() as f32, image.height() as f32);
    let t = n as f32;
    let bars = 6;
    let (chart_x, chart_w, chart_bottom, chart_h) = (w * 0.55, w * 0.38, h * 0.88, h * 0.5);
    let bar_w = chart_w / bars as f32;
    let bar_height = |i: usize| {
        let i = i as f32;
        chart_h * (0.35 + 0.3 * (t * 0.7 + i * 1.3).sin().abs() + 0.05 * i)
    };
    let (pointer_x, pointer_y) = (
        w * (0.5 + 0.4 * (t * 0.31).sin()),
        h * (0.5 + 0.35 * (t * 0.47).cos()),
    );
    let pointer = h * 0.025;
    for (x, y, out) in image.enumerate_pixels_mut() {
        let (xf, yf) = (x as f32, y as f32);
        let mut colour = [246.0, 246.0, 243.0];
        if yf < h * 0.16 {
            colour = palette.shirt;
        } else if xf > w * 0.06 && xf < w * 0.48 {
            // Lines of text: short grey bars of varying length.
            let line = ((yf - h * 0.24) / (h * 0.07)).floor();
            let within = (yf - h * 0.24) - line * h * 0.07;
            let length = w * (0.22 + 0.18 * ((line * 2.7).sin().abs()));
            if (0.0..9.0).contains(&line) && within < h * 0.03 && xf < w * 0.06 + length {
                colour = [120.0, 120.0, 128.0];
            }
        } else if xf >= chart_x && xf < chart_x + chart_w && yf <= chart_bottom {
            let i = ((xf - chart_x) / bar_w) as usize;
            let inside_bar = (xf - chart_x) - i as f32 * bar_w > bar_w * 0.2;
            if inside_bar && yf >= chart_bottom - bar_height(i) {
                colour = if i.is_multiple_of(2) {
                    palette.accent
                } else {
                    palette.shadow
                };
            }
        }
        if (xf - pointer_x).abs() < pointer && (yf - pointer_y).abs() < pointer {
            colour = [20.0, 20.0, 20.0];
        }
        *out = pixel(colour);
    }
}

/// Triangular noise of at most `amplitude` levels on every channel, from a generator seeded
/// by the stream and the frame number, so the same frame always gets the same noise.
fn add_noise(image: &mut RgbImage, seed: u64, n: u64, amplitude: u8) {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ n);
    let span = u32::from(amplitude) + 1;
    for chunk in image.chunks_mut(4) {
        let random = rng.next_u64();
        for (i, value) in chunk.iter_mut().enumerate() {
            let a = ((random >> (16 * i)) & 0xff) as u32 % span;
            let b = ((random >> (16 * i + 8)) & 0xff) as u32 % span;
            let delta = (a + b) as i32 - i32::from(amplitude);
            *value = (i32::from(*value) + delta).clamp(0, 255) as u8;
        }
    }
}

/// Writes `text` at (x, y) in white on a dark box, each glyph pixel a `scale`-sized square.
pub(crate) fn draw_label(image: &mut RgbImage, x: u32, y: u32, scale: u32, text: &str) {
    let glyphs: Vec<[u8; 8]> = text.chars().map(glyph).collect();
    let pad = 2 * scale;
    let (box_w, box_h) = (
        glyphs.len() as u32 * 8 * scale + 2 * pad,
        8 * scale + 2 * pad,
    );
    for by in y..(y + box_h).min(image.height()) {
        for bx in x..(x + box_w).min(image.width()) {
            let Rgb(c) = image.get_pixel(bx, by);
            image.put_pixel(bx, by, Rgb(c.map(|v| v / 3)));
        }
    }
    for (i, rows) in glyphs.iter().enumerate() {
        let left = x + pad + i as u32 * 8 * scale;
        for (row, bits) in rows.iter().enumerate() {
            for col in 0..8 {
                // font8x8: one byte per row, the lowest bit the leftmost pixel.
                if bits & (1 << col) == 0 {
                    continue;
                }
                let (px, py) = (left + col * scale, y + pad + row as u32 * scale);
                for dy in 0..scale {
                    for dx in 0..scale {
                        if px + dx < image.width() && py + dy < image.height() {
                            image.put_pixel(px + dx, py + dy, Rgb([255, 255, 255]));
                        }
                    }
                }
            }
        }
    }
}

/// The 8x8 bitmap of a character: ASCII and Latin-1 letters, and `?` for anything else.
fn glyph(c: char) -> [u8; 8] {
    font8x8::BASIC_FONTS
        .get(c)
        .or_else(|| font8x8::LATIN_FONTS.get(c))
        .or_else(|| font8x8::BASIC_FONTS.get('?'))
        .unwrap_or([0; 8])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn look(kind: StreamKind, seed: u64) -> Look {
        Look {
            name: "Alice Smith".into(),
            kind,
            width: 640,
            height: 360,
            seed,
        }
    }

    #[test]
    fn webcam_frames_are_the_size_of_real_webcam_pngs() {
        for seed in 0..4 {
            for n in [0, 7] {
                let png = render(&look(StreamKind::Webcam, seed), n, "frame 7  00:03.500");
                let kb = png.len() / 1000;
                assert!(
                    (200..=400).contains(&kb),
                    "seed {seed} frame {n}: {kb} KB, not 200-400 KB"
                );
                assert_eq!(crate::event::png_dimensions(&png).unwrap(), (640, 360));
            }
        }
    }

    #[test]
    fn frames_are_deterministic_and_differ_from_one_to_the_next() {
        let webcam = look(StreamKind::Webcam, 1);
        assert_eq!(render(&webcam, 3, "3"), render(&webcam, 3, "3"));
        assert_ne!(render(&webcam, 3, "3"), render(&webcam, 4, "4"));
        let screen = look(StreamKind::Screenshare, 1);
        let png = render(&screen, 3, "3");
        assert!(png.len() < 150_000, "screens compress well: {}", png.len());
        assert_ne!(png, render(&screen, 4, "4"));
    }

    #[test]
    fn other_resolutions_render_at_their_size() {
        for (width, height) in [(1280, 720), (320, 180), (16, 16)] {
            let look = Look {
                width,
                height,
                ..look(StreamKind::Webcam, 2)
            };
            let png = render(&look, 0, "frame 0");
            assert_eq!(crate::event::png_dimensions(&png).unwrap(), (width, height));
        }
    }
}
