//! Great-circle arithmetic for the meeting point (SPEC §7): straight-line figures, not road ones.

/// The mean Earth radius (IUGG), in metres: the sphere whose great circles the figures follow.
pub const EARTH_RADIUS_M: f64 = 6_371_008.8;

/// A point on the globe, in degrees.
#[derive(Clone, Copy, PartialEq)]
pub struct Point {
    /// Latitude, -90..=90.
    pub lat: f64,
    /// Longitude, -180..=180.
    pub lng: f64,
}

impl std::fmt::Debug for Point {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(super::HIDDEN)
    }
}

/// The great-circle distance between two points in metres (haversine: exact on the sphere, and
/// well conditioned for the short distances around a meeting point, unlike the law of cosines).
pub fn distance_m(a: Point, b: Point) -> f64 {
    let (phi1, phi2) = (a.lat.to_radians(), b.lat.to_radians());
    let d_phi = phi2 - phi1;
    let d_lambda = (b.lng - a.lng).to_radians();
    let h = (d_phi / 2.0).sin().powi(2) + phi1.cos() * phi2.cos() * (d_lambda / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_M * h.sqrt().min(1.0).asin()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(lat: f64, lng: f64) -> Point {
        Point { lat, lng }
    }

    /// Within `tolerance` (a fraction) of the geodesic distance on WGS 84.
    fn close(got: f64, geodesic_m: f64, tolerance: f64) -> bool {
        ((got - geodesic_m) / geodesic_m).abs() <= tolerance
    }

    #[test]
    fn city_pairs_within_half_a_percent_of_the_geodesic() {
        // Geodesic distances on WGS 84 between city centres (GeographicLib's Karney algorithm).
        let pairs = [
            ("London–Paris", p(51.5074, -0.1278), p(48.8566, 2.3522), 343_923.0),
            ("New York–Los Angeles", p(40.7128, -74.0060), p(34.0522, -118.2437), 3_944_422.0),
            ("Sydney–Melbourne", p(-33.8688, 151.2093), p(-37.8136, 144.9631), 713_858.0),
            ("Tokyo–Sydney", p(35.6762, 139.6503), p(-33.8688, 151.2093), 7_792_175.0),
        ];
        for (name, a, b, geodesic) in pairs {
            let d = distance_m(a, b);
            assert!(close(d, geodesic, 0.005), "{name}: {d} m vs {geodesic} m");
            assert!((distance_m(b, a) - d).abs() < 1e-6, "{name} is symmetric");
        }
    }

    #[test]
    fn short_distances_and_edges() {
        assert_eq!(distance_m(p(10.0, 20.0), p(10.0, 20.0)), 0.0);
        // One thousandth of a degree of latitude is about 111 m anywhere.
        let d = distance_m(p(45.0, 7.0), p(45.001, 7.0));
        assert!((d - 111.2).abs() < 0.5, "{d}");
        // Across the antimeridian the short way round.
        let d = distance_m(p(0.0, 179.9995), p(0.0, -179.9995));
        assert!((d - 111.2).abs() < 0.5, "{d}");
        // Antipodes: half the circumference, no NaN.
        let d = distance_m(p(90.0, 0.0), p(-90.0, 0.0));
        assert!((d - std::f64::consts::PI * EARTH_RADIUS_M).abs() < 1.0, "{d}");
    }

    #[test]
    fn debug_hides_the_point() {
        assert_eq!(format!("{:?}", p(48.8566, 2.3522)), super::super::HIDDEN);
    }
}
