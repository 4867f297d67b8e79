//! Bit-exact fp8 encode/decode for the three cache formats.
//!
//! Encoding is `saturate(round_nearest_even(v))` from an f32 value: NaN stays NaN, anything
//! whose rounding would pass the largest finite value (infinities included) becomes that
//! value with its sign. The GPU kernels implement the same integer algorithm
//! (`kernels/fp8.h`), so caches written on either backend hold the same bytes.

use crate::core::dtype::Fp8Format;

/// Format parameters: exponent bias, mantissa bits, largest finite encoding, NaN encoding.
#[derive(Clone, Copy, Debug)]
struct Spec {
    bias: i32,
    mantissa_bits: u32,
    max_code: u8,
    nan_code: u8,
    has_negative_zero: bool,
    has_inf: bool,
}

const fn spec(format: Fp8Format) -> Spec {
    match format {
        Fp8Format::E4M3FN => {
            Spec { bias: 7, mantissa_bits: 3, max_code: 0x7E, nan_code: 0x7F, has_negative_zero: true, has_inf: false }
        }
        Fp8Format::E4M3FNUZ => {
            Spec { bias: 8, mantissa_bits: 3, max_code: 0x7F, nan_code: 0x80, has_negative_zero: false, has_inf: false }
        }
        Fp8Format::E5M2 => {
            Spec { bias: 15, mantissa_bits: 2, max_code: 0x7B, nan_code: 0x7F, has_negative_zero: true, has_inf: true }
        }
    }
}

/// Largest finite magnitude of a format (448, 240, 57344).
pub fn max_finite(format: Fp8Format) -> f32 {
    decode(format, spec(format).max_code)
}

/// Decodes one byte to f32 (exact: every fp8 value is an f32).
pub fn decode(format: Fp8Format, code: u8) -> f32 {
    let s = spec(format);
    if code == s.nan_code || (format == Fp8Format::E4M3FN && code & 0x7F == 0x7F) {
        return f32::NAN;
    }
    let sign = if code & 0x80 != 0 { -1.0f32 } else { 1.0 };
    let exp_bits = 7 - s.mantissa_bits;
    let exp = ((code & 0x7F) >> s.mantissa_bits) as i32;
    let mant = (code & ((1 << s.mantissa_bits) - 1)) as i32;
    if s.has_inf && exp == (1 << exp_bits) - 1 {
        return if mant == 0 { sign * f32::INFINITY } else { f32::NAN };
    }
    let m = s.mantissa_bits as i32;
    let magnitude = if exp == 0 {
        mant as f32 * 2f32.powi(1 - s.bias - m)
    } else {
        (((1 << m) + mant) as f32) * 2f32.powi(exp - s.bias - m)
    };
    if !s.has_negative_zero && code == 0x80 {
        return f32::NAN;
    }
    sign * magnitude
}

/// Encodes an f32 with round-to-nearest-even and saturation to the largest finite value.
pub fn encode(format: Fp8Format, v: f32) -> u8 {
    let s = spec(format);
    if v.is_nan() {
        return s.nan_code;
    }
    let bits = v.to_bits();
    let negative = bits >> 31 != 0;
    let sign_bit = if negative { 0x80u8 } else { 0 };
    let max = max_finite(format) as f64;
    let a = (v as f64).abs();
    let m = s.mantissa_bits as i32;
    let min_normal_exp = 1 - s.bias;
    // Quantum of the binade holding `a` (subnormals share the smallest normal binade's).
    let e = if a == 0.0 { min_normal_exp } else { binade(a).max(min_normal_exp) };
    let quantum = 2f64.powi(e - m);
    let r = round_half_even(a / quantum) * quantum;
    // Saturation wins over infinity for every format (vLLM's __NV_SATFINITE / HIP default).
    if r >= max || a.is_infinite() {
        return sign_bit | s.max_code;
    }
    if r == 0.0 {
        return if s.has_negative_zero { sign_bit } else { 0 };
    }
    let re = binade(r).max(min_normal_exp);
    let code = if r < 2f64.powi(min_normal_exp) {
        (r / 2f64.powi(min_normal_exp - m)) as u8
    } else {
        let mant = (r / 2f64.powi(re - m)) as i32 - (1 << m);
        (((re + s.bias) << m) | mant) as u8
    };
    sign_bit | code
}

/// `floor(log2(a))` for a positive, finite, normal f64, read exactly from its exponent bits.
fn binade(a: f64) -> i32 {
    ((a.to_bits() >> 52) & 0x7FF) as i32 - 1023
}

fn round_half_even(x: f64) -> f64 {
    let f = x.floor();
    let diff = x - f;
    if diff > 0.5 || (diff == 0.5 && f % 2.0 != 0.0) { f + 1.0 } else { f }
}

/// Quantises a model value for an fp8 cache: `encode(v / scale)` with the division in f32.
pub fn quantize(format: Fp8Format, v: f32, scale: f32) -> u8 {
    encode(format, v / scale)
}

/// Dequantises a cached byte: `decode(code) * scale`.
pub fn dequantize(format: Fp8Format, code: u8, scale: f32) -> f32 {
    decode(format, code) * scale
}

#[cfg(test)]
mod tests {
    use super::*;

    const FORMATS: [Fp8Format; 3] = [Fp8Format::E4M3FN, Fp8Format::E4M3FNUZ, Fp8Format::E5M2];

    #[test]
    fn known_constants() {
        assert_eq!(max_finite(Fp8Format::E4M3FN), 448.0);
        assert_eq!(max_finite(Fp8Format::E4M3FNUZ), 240.0);
        assert_eq!(max_finite(Fp8Format::E5M2), 57344.0);
        assert_eq!(encode(Fp8Format::E4M3FN, 1.0), 0x38);
        assert_eq!(encode(Fp8Format::E4M3FNUZ, 1.0), 0x40);
        assert_eq!(encode(Fp8Format::E5M2, 1.0), 0x3C);
        assert_eq!(encode(Fp8Format::E4M3FN, -2.0), 0xC0);
        assert_eq!(encode(Fp8Format::E4M3FNUZ, -0.0), 0x00);
        assert_eq!(encode(Fp8Format::E4M3FN, -0.0), 0x80);
        assert_eq!(encode(Fp8Format::E4M3FN, f32::NAN), 0x7F);
        assert_eq!(encode(Fp8Format::E4M3FNUZ, f32::NAN), 0x80);
        assert_eq!(encode(Fp8Format::E4M3FN, 1e9), 0x7E);
        assert_eq!(encode(Fp8Format::E4M3FN, f32::NEG_INFINITY), 0xFE);
        assert_eq!(encode(Fp8Format::E5M2, f32::INFINITY), 0x7B);
        // Smallest subnormals.
        assert_eq!(decode(Fp8Format::E4M3FN, 0x01), 2f32.powi(-9));
        assert_eq!(decode(Fp8Format::E4M3FNUZ, 0x01), 2f32.powi(-10));
        assert_eq!(decode(Fp8Format::E5M2, 0x01), 2f32.powi(-16));
    }

    #[test]
    fn every_finite_code_round_trips() {
        for f in FORMATS {
            for code in 0..=255u8 {
                let v = decode(f, code);
                if v.is_nan() || v.is_infinite() {
                    continue;
                }
                let back = encode(f, v);
                // -0 of fnuz is NaN, so 0 encodes as 0x00 only.
                assert_eq!(decode(f, back).to_bits(), v.to_bits(), "{f:?} code {code:#04x} value {v}");
            }
        }
    }

    /// Independent check: the nearest representable value, ties to the even code, by search.
    #[test]
    fn rounding_is_nearest_even_and_saturating_by_exhaustive_search() {
        for f in FORMATS {
            let finite: Vec<(u8, f64)> =
                (0..=255u8).map(|c| (c, decode(f, c) as f64)).filter(|(_, v)| v.is_finite()).collect();
            let max = max_finite(f) as f64;
            let mut x = -70000.0f64;
            let mut k = 0u64;
            while x < 70000.0 {
                let v = x as f32;
                let got = decode(f, encode(f, v)) as f64;
                let vd = v as f64;
                let want = if vd.abs() >= max {
                    max.copysign(vd)
                } else {
                    let mut best = (f64::INFINITY, 0.0f64, 0u8);
                    for &(c, val) in &finite {
                        let dist = (val - vd).abs();
                        let even = c & 1 == 0;
                        if dist < best.0 || (dist == best.0 && even && best.2 & 1 == 1) {
                            best = (dist, val, c);
                        }
                    }
                    best.1
                };
                assert!(got == want || (got == 0.0 && want == 0.0), "{f:?}: encode({v}) -> {got}, expected {want}");
                // Log-spaced walk with some irregular steps to hit ties and binade edges.
                k += 1;
                let step = (x.abs() * 0.0037).max(1e-7) * if k % 7 == 0 { 0.5 } else { 1.0 };
                x += step;
            }
            // Exact ties between neighbouring codes go to the even code.
            for w in finite.windows(2) {
                let (c0, v0) = w[0];
                let (c1, v1) = w[1];
                if v0 < 0.0 || v1 <= v0 {
                    continue;
                }
                let mid = ((v0 + v1) / 2.0) as f32;
                if (mid as f64) != (v0 + v1) / 2.0 {
                    continue;
                }
                let expect = if c0 & 1 == 0 { c0 } else { c1 };
                if (v1 as f32) < max_finite(f) || c1 <= spec(f).max_code {
                    assert_eq!(encode(f, mid), expect, "{f:?} tie between {v0} and {v1}");
                }
            }
        }
    }

    #[test]
    fn quantize_divides_by_the_scale() {
        assert_eq!(quantize(Fp8Format::E4M3FN, 1.0, 0.5), encode(Fp8Format::E4M3FN, 2.0));
        assert_eq!(dequantize(Fp8Format::E4M3FN, encode(Fp8Format::E4M3FN, 2.0), 0.25), 0.5);
    }
}
