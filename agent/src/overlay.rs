//! The burnt-in publisher clock: `PUB hh:mm:ss.mmm` in blue, top left.
//!
//! The text changes every frame (milliseconds), so a text renderer
//! (`textoverlay`, pango) would lay out and rasterise it 30 times a second,
//! which costs several percent of a core at 720p. Instead the digits come
//! from a built-in 5×7 bitmap font, scaled to the frame and written straight
//! into the Y and chroma planes of the I420 or NV12 frame the encoder takes:
//! a few thousand pixel writes per frame. Pure functions over plane slices,
//! so they are tested without GStreamer; the pad probe is in `pipeline`.

/// Glyph rows, 5 bits each (bit 4 is the leftmost column), 7 rows.
fn glyph(c: char) -> [u8; 7] {
    match c {
        '0' => [0x0e, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0e],
        '1' => [0x04, 0x0c, 0x04, 0x04, 0x04, 0x04, 0x0e],
        '2' => [0x0e, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1f],
        '3' => [0x1f, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0e],
        '4' => [0x02, 0x06, 0x0a, 0x12, 0x1f, 0x02, 0x02],
        '5' => [0x1f, 0x10, 0x1e, 0x01, 0x01, 0x11, 0x0e],
        '6' => [0x06, 0x08, 0x10, 0x1e, 0x11, 0x11, 0x0e],
        '7' => [0x1f, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08],
        '8' => [0x0e, 0x11, 0x11, 0x0e, 0x11, 0x11, 0x0e],
        '9' => [0x0e, 0x11, 0x11, 0x0f, 0x01, 0x02, 0x0c],
        ':' => [0x00, 0x0c, 0x0c, 0x00, 0x0c, 0x0c, 0x00],
        '.' => [0x00, 0x00, 0x00, 0x00, 0x00, 0x0c, 0x0c],
        '-' => [0x00, 0x00, 0x00, 0x1f, 0x00, 0x00, 0x00],
        'P' => [0x1e, 0x11, 0x11, 0x1e, 0x10, 0x10, 0x10],
        'U' => [0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0e],
        'B' => [0x1e, 0x11, 0x11, 0x1e, 0x11, 0x11, 0x1e],
        _ => [0; 7],
    }
}

/// Blue in BT.601 limited-range YCbCr.
const BLUE: (u8, u8, u8) = (41, 240, 110);

/// The chroma layout of the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chroma {
    /// Separate U and V planes (I420).
    Planar,
    /// One interleaved UV plane (NV12).
    Interleaved,
}

/// A frame's planes as the overlay needs them: 4:2:0, 8 bits.
pub struct Frame<'a> {
    pub width: usize,
    pub height: usize,
    pub y: &'a mut [u8],
    pub y_stride: usize,
    /// U plane (I420) or interleaved UV plane (NV12).
    pub u: &'a mut [u8],
    pub u_stride: usize,
    /// V plane (I420); unused for NV12.
    pub v: &'a mut [u8],
    pub v_stride: usize,
    pub chroma: Chroma,
}

/// Pixel size of one font dot for a frame `height` pixels tall (even, ≥ 2).
pub fn scale_for(height: usize) -> usize {
    ((height / 160).max(1)) * 2
}

/// Draws `text` with its top-left corner at (`x`, `y`), on a darkened box so
/// it reads on any picture. Clips at the frame's edges; never panics.
pub fn draw(frame: &mut Frame<'_>, text: &str, x: usize, y: usize, scale: usize) {
    let scale = scale.max(2) & !1;
    let pad = scale;
    let cols = text.chars().count() * 6;
    let box_w = cols * scale + 2 * pad;
    let box_h = 7 * scale + 2 * pad;
    // Darken the box (luma only, keeps it cheap and neutral).
    for row in y..(y + box_h).min(frame.height) {
        let start = row * frame.y_stride + x;
        let end = (row * frame.y_stride + (x + box_w).min(frame.width)).min(frame.y.len());
        if let Some(line) = frame.y.get_mut(start..end) {
            for p in line {
                *p = 16 + (*p - (*p).min(16)) / 4;
            }
        }
    }
    for (i, c) in text.chars().enumerate() {
        let rows = glyph(c);
        for (gy, bits) in rows.iter().enumerate() {
            for gx in 0..5 {
                if bits & (0x10 >> gx) == 0 {
                    continue;
                }
                let px = x + pad + (i * 6 + gx) * scale;
                let py = y + pad + gy * scale;
                fill(frame, px, py, scale);
            }
        }
    }
}

/// Paints a `size`×`size` blue square at an even position (so it covers
/// whole chroma samples).
fn fill(frame: &mut Frame<'_>, x: usize, y: usize, size: usize) {
    let x_end = (x + size).min(frame.width);
    let y_end = (y + size).min(frame.height);
    if x >= x_end || y >= y_end {
        return;
    }
    for row in y..y_end {
        let start = row * frame.y_stride;
        if let Some(line) = frame.y.get_mut(start + x..start + x_end) {
            line.fill(BLUE.0);
        }
    }
    for row in y / 2..y_end.div_ceil(2) {
        match frame.chroma {
            Chroma::Planar => {
                let (us, vs) = (row * frame.u_stride, row * frame.v_stride);
                if let Some(line) = frame.u.get_mut(us + x / 2..us + x_end.div_ceil(2)) {
                    line.fill(BLUE.1);
                }
                if let Some(line) = frame.v.get_mut(vs + x / 2..vs + x_end.div_ceil(2)) {
                    line.fill(BLUE.2);
                }
            }
            Chroma::Interleaved => {
                let s = row * frame.u_stride;
                let (a, b) = (x / 2 * 2, x_end.div_ceil(2) * 2);
                if let Some(line) = frame.u.get_mut(s + a..s + b) {
                    for pair in line.chunks_exact_mut(2) {
                        pair[0] = BLUE.1;
                        pair[1] = BLUE.2;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Planes {
        y: Vec<u8>,
        u: Vec<u8>,
        v: Vec<u8>,
    }

    fn i420(w: usize, h: usize) -> Planes {
        Planes {
            y: vec![128; w * h],
            u: vec![128; w * h / 4],
            v: vec![128; w * h / 4],
        }
    }

    #[test]
    fn draws_blue_text_top_left_and_clips() {
        let (w, h) = (320, 240);
        let mut p = i420(w, h);
        let mut f = Frame {
            width: w,
            height: h,
            y: &mut p.y,
            y_stride: w,
            u: &mut p.u,
            u_stride: w / 2,
            v: &mut p.v,
            v_stride: w / 2,
            chroma: Chroma::Planar,
        };
        let s = scale_for(h);
        draw(&mut f, "PUB 12:34:56.789", 8, 8, s);
        // Somewhere in the box there is blue, and the far corner is untouched.
        assert!(p.y.contains(&BLUE.0));
        assert!(p.u.contains(&BLUE.1) && p.v.contains(&BLUE.2));
        assert_eq!(p.y[(h - 1) * w + w - 1], 128);
        // Text wider than the frame is clipped, not a panic.
        let mut f = Frame {
            width: w,
            height: h,
            y: &mut p.y,
            y_stride: w,
            u: &mut p.u,
            u_stride: w / 2,
            v: &mut p.v,
            v_stride: w / 2,
            chroma: Chroma::Planar,
        };
        draw(&mut f, "PUB 00:00:00.000 PUB 00:00:00.000", 300, 230, 8);
    }

    #[test]
    fn nv12_writes_interleaved_chroma() {
        let (w, h) = (64, 32);
        let mut y = vec![128u8; w * h];
        let mut uv = vec![128u8; w * h / 2];
        let mut none: Vec<u8> = Vec::new();
        let mut f = Frame {
            width: w,
            height: h,
            y: &mut y,
            y_stride: w,
            u: &mut uv,
            u_stride: w,
            v: &mut none,
            v_stride: 0,
            chroma: Chroma::Interleaved,
        };
        draw(&mut f, "8", 0, 0, 2);
        let pairs: Vec<(u8, u8)> = uv.chunks_exact(2).map(|c| (c[0], c[1])).collect();
        assert!(pairs.contains(&(BLUE.1, BLUE.2)));
        assert!(pairs
            .iter()
            .all(|p| *p == (128, 128) || *p == (BLUE.1, BLUE.2)));
    }

    #[test]
    fn every_clock_character_has_a_glyph() {
        for c in "PUB 0123456789:.-".chars().filter(|c| *c != ' ') {
            assert!(glyph(c).iter().any(|r| *r != 0), "{c}");
        }
    }
}
