//! Kubernetes quantities (`500m`, `16Gi`, `1e3`) as numbers.

/// The largest value a Kubernetes quantity holds, 2^63 - 1: the API server reads larger
/// ones as this.
pub const MAX_QUANTITY: f64 = i64::MAX as f64;

/// The value of a non-negative Kubernetes quantity: a decimal number with an optional
/// suffix (`m`, `k`, `M`, `G`, `T`, `P`, `E`, `Ki` .. `Ei`) or exponent; `None` when `s`
/// is not one. Larger values than [`MAX_QUANTITY`] read as it, as the API server reads
/// them.
///
/// ```
/// use hollow_core::quantity::{MAX_QUANTITY, parse_quantity};
///
/// assert_eq!(parse_quantity("250m"), Some(0.25));
/// assert_eq!(parse_quantity("16Mi"), Some(16.0 * 1024.0 * 1024.0));
/// assert_eq!(parse_quantity("-1"), None);
/// assert_eq!(parse_quantity("1e400"), Some(MAX_QUANTITY));
/// assert_eq!(parse_quantity("0e400"), Some(0.0));
/// ```
pub fn parse_quantity(s: &str) -> Option<f64> {
    let value = unclamped(s)?;
    // 0 times an exponent too large for an f64 (0e400) is NaN: it is 0.
    Some(if value.is_nan() {
        0.0
    } else {
        value.min(MAX_QUANTITY)
    })
}

fn unclamped(s: &str) -> Option<f64> {
    let digits_end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(digits_end);
    if number.is_empty()
        || number.matches('.').count() > 1
        || !number.contains(|c: char| c.is_ascii_digit())
    {
        return None;
    }
    let value: f64 = number.parse().ok()?;
    let binary = |power: i32| Some(value * 1024f64.powi(power));
    let decimal = |power: i32| Some(value * 10f64.powi(power));
    match suffix {
        "" => Some(value),
        "m" => decimal(-3),
        "k" => decimal(3),
        "M" => decimal(6),
        "G" => decimal(9),
        "T" => decimal(12),
        "P" => decimal(15),
        "E" => decimal(18),
        "Ki" => binary(1),
        "Mi" => binary(2),
        "Gi" => binary(3),
        "Ti" => binary(4),
        "Pi" => binary(5),
        "Ei" => binary(6),
        _ if suffix.starts_with(['e', 'E']) => {
            let exponent: i32 = suffix[1..].parse().ok()?;
            decimal(exponent)
        }
        _ => None,
    }
}

/// Whether `s` is a non-negative Kubernetes quantity (see [`parse_quantity`]). The node
/// builder refuses capacities that are not.
///
/// ```
/// use hollow_core::quantity::is_quantity;
///
/// assert!(is_quantity("16Gi") && is_quantity("500m"));
/// assert!(!is_quantity("-1") && !is_quantity("lots"));
/// ```
pub fn is_quantity(s: &str) -> bool {
    parse_quantity(s).is_some()
}

/// `value` written as the API server writes a quantity computed from `like` (the
/// quantity a sum started from, whose format it keeps): binary suffixes (`Ki` .. `Ei`)
/// when `like` has one, decimal ones (`m`, `k` .. `E`) otherwise, with the largest
/// suffix that keeps the number whole (`resource.Quantity.String`'s canonical form, as
/// `resourcehelper.PodRequests` sums produce it).
///
/// ```
/// use hollow_core::quantity::format_like;
///
/// assert_eq!(format_like(0.3, "100m"), "300m");
/// assert_eq!(format_like(1.5, "1"), "1500m");
/// assert_eq!(format_like(2.0, "1"), "2");
/// assert_eq!(format_like(128.0 * 1024.0 * 1024.0, "64Mi"), "128Mi");
/// assert_eq!(format_like(200e6, "100M"), "200M");
/// assert_eq!(format_like(1025.0, "1Ki"), "1025");
/// ```
pub fn format_like(value: f64, like: &str) -> String {
    let value = value.clamp(0.0, MAX_QUANTITY);
    if like.ends_with('i') && value.fract() == 0.0 && value >= 1024.0 {
        let whole = value as u128;
        for (power, suffix) in [
            (6, "Ei"),
            (5, "Pi"),
            (4, "Ti"),
            (3, "Gi"),
            (2, "Mi"),
            (1, "Ki"),
        ] {
            let unit = 1024u128.pow(power);
            if whole.is_multiple_of(unit) {
                return format!("{}{suffix}", whole / unit);
            }
        }
        return whole.to_string();
    }
    let milli = (value * 1000.0).round() as u128;
    if !milli.is_multiple_of(1000) {
        return format!("{milli}m");
    }
    let whole = milli / 1000;
    if whole == 0 {
        return "0".into();
    }
    for (power, suffix) in [(6, "E"), (5, "P"), (4, "T"), (3, "G"), (2, "M"), (1, "k")] {
        let unit = 1000u128.pow(power);
        if whole.is_multiple_of(unit) {
            return format!("{}{suffix}", whole / unit);
        }
    }
    whole.to_string()
}
