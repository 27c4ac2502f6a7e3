//! Real PNGs made here: noise that differs with a seed, and frames that look like a webcam or
//! a slide for the browser test's screenshots.

use std::io::Cursor;

/// A real PNG whose pixels (and so bytes) depend on `seed`.
pub fn png(width: u32, height: u32, seed: u32) -> Vec<u8> {
    let image = image::RgbImage::from_fn(width, height, |x, y| {
        let v = seed
            .wrapping_mul(2_654_435_761)
            .wrapping_add(x * 31 + y * 17);
        image::Rgb([v as u8, (v >> 8) as u8, (v >> 16) as u8])
    });
    let mut bytes = Vec::new();
    image
        .write_to(&mut Cursor::new(&mut bytes), image::ImageFormat::Png)
        .expect("encode PNG");
    bytes
}

/// A 16:9 frame that looks like someone on a webcam: a backdrop and shirt in the
/// participant's `hue` (0 to 360) and a head that sways a little with time `t` (seconds).
pub fn webcam_png(width: u32, height: u32, hue: f32, t: f32) -> Vec<u8> {
    let (w, h) = (width as f32, height as f32);
    let backdrop = hsl(hue, 0.28, 0.86);
    let backdrop_low = hsl(hue, 0.30, 0.72);
    let shirt = hsl(hue, 0.45, 0.42);
    let skin = [224.0, 182.0, 150.0];
    let hair = [70.0, 52.0, 44.0];
    let sway = (t * 1.7).sin() * w * 0.02;
    let head = (w * 0.5 + sway, h * 0.43, h * 0.16);
    paint(width, height, |x, y| {
        let mut colour = mix(backdrop, backdrop_low, y / h);
        // shoulders: the top of a wide ellipse below the frame
        let (sx, sy) = (
            (x - w * 0.5 - sway * 0.4) / (w * 0.27),
            (y - h * 1.02) / (h * 0.42),
        );
        colour = mix(colour, shirt, edge(1.0 - (sx * sx + sy * sy).sqrt(), 60.0));
        let (dx, dy) = (x - head.0, y - head.1);
        let d = (dx * dx + dy * dy).sqrt();
        colour = mix(colour, skin, edge(head.2 - d, 1.0));
        // hair on the top of the head
        let top = edge(head.2 * 1.04 - d, 1.0) * edge(head.1 - head.2 * 0.35 - y, 1.0);
        mix(colour, hair, top)
    })
}

/// A 16:9 frame that looks like a shared slide, different for each `page`.
pub fn slide_png(width: u32, height: u32, page: u32) -> Vec<u8> {
    let (w, h) = (width as f32, height as f32);
    let accent = hsl(220.0 + page as f32 * 25.0, 0.62, 0.48);
    paint(width, height, |x, y| {
        let (u, v) = (x / w, y / h);
        let inside = |x0: f32, y0: f32, x1: f32, y1: f32| u >= x0 && u < x1 && v >= y0 && v < y1;
        if inside(0.0, 0.0, 1.0, 0.16) {
            return accent;
        }
        if inside(0.07, 0.24, 0.55, 0.31) {
            return [40.0, 44.0, 52.0];
        }
        for (i, len) in [0.38, 0.32, 0.41, 0.26].iter().enumerate() {
            let top = 0.40 + i as f32 * 0.11;
            if inside(0.07, top, 0.07 + len, top + 0.035) {
                return [150.0, 156.0, 168.0];
            }
        }
        for bar in 0..4 {
            let left = 0.62 + bar as f32 * 0.08;
            let height = 0.15 + ((bar + page) % 4) as f32 * 0.12;
            if inside(left, 0.85 - height, left + 0.055, 0.85) {
                return mix(accent, [255.0; 3], bar as f32 * 0.18);
            }
        }
        [250.0, 250.0, 252.0]
    })
}

fn paint(width: u32, height: u32, colour: impl Fn(f32, f32) -> [f32; 3]) -> Vec<u8> {
    let image = image::RgbImage::from_fn(width, height, |x, y| {
        let [r, g, b] = colour(x as f32 + 0.5, y as f32 + 0.5);
        image::Rgb([r as u8, g as u8, b as u8])
    });
    let mut bytes = Vec::new();
    image
        .write_to(&mut Cursor::new(&mut bytes), image::ImageFormat::Png)
        .expect("encode PNG");
    bytes
}

fn mix(a: [f32; 3], b: [f32; 3], t: f32) -> [f32; 3] {
    let t = t.clamp(0.0, 1.0);
    [0, 1, 2].map(|i| a[i] + (b[i] - a[i]) * t)
}

/// 0 outside, 1 inside, a soft step `softness` wide at the border.
fn edge(distance_inside: f32, softness: f32) -> f32 {
    (distance_inside * softness).clamp(0.0, 1.0)
}

fn hsl(hue: f32, saturation: f32, lightness: f32) -> [f32; 3] {
    let c = (1.0 - (2.0 * lightness - 1.0).abs()) * saturation;
    let h = (hue.rem_euclid(360.0)) / 60.0;
    let x = c * (1.0 - (h % 2.0 - 1.0).abs());
    let (r, g, b) = match h as u32 {
        0 => (c, x, 0.0),
        1 => (x, c, 0.0),
        2 => (0.0, c, x),
        3 => (0.0, x, c),
        4 => (x, 0.0, c),
        _ => (c, 0.0, x),
    };
    let m = lightness - c / 2.0;
    [r, g, b].map(|v| (v + m) * 255.0)
}
