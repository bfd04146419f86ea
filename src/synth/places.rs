//! A fixed synthetic geography: towns with states, ZIP codes and area codes, and streets.
//!
//! The town list is built from a constant seed, so every generated data set shares it and
//! a town keeps its ZIP codes across runs. Town sizes follow a Zipf law and big towns have
//! many ZIPs, so each postcode is shared by many people but none by a large share of all.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use super::rng::{below_u32, between, index, seeded, Rng};

/// Seed of the geography (independent of the run's seed, so towns never change).
const GEOGRAPHY_SEED: u64 = 0x0050_1a7e_70e5;
/// Number of towns.
const TOWNS: usize = 300;

/// States used, with their real 3-digit ZIP prefix ranges.
const STATES: &[(&str, u32, u32)] = &[
    ("MA", 10, 27),
    ("NY", 100, 149),
    ("PA", 150, 196),
    ("NC", 270, 289),
    ("GA", 300, 319),
    ("FL", 320, 349),
    ("OH", 430, 458),
    ("MN", 550, 567),
    ("IL", 600, 629),
    ("TX", 750, 799),
    ("CA", 900, 961),
    ("WA", 980, 994),
];

const TOWN_PREFIXES: &[&str] = &[
    "Oak", "Maple", "Cedar", "Green", "Fair", "Spring", "River", "Lake", "Mill", "Pine", "Elm",
    "Ash", "Brook", "Clear", "Stone", "North", "South", "East", "West", "High", "Glen", "Red",
    "White", "Silver", "Golden", "Rock", "Sand", "Wood", "Hazel", "Bridge", "Marsh", "Fox", "Deer",
    "Eagle", "Hawk", "Willow", "Birch", "Cherry", "Apple", "Long", "Black", "Bell", "Chester",
    "Kings", "Queens", "New", "Port", "Mount", "Mid", "Hill", "Har", "Wex", "Lin", "Ash", "Brad",
    "Carl", "Dun", "Ed", "Frank", "Green",
];
const TOWN_SUFFIXES: &[&str] = &[
    "field",
    "ton",
    "ville",
    "wood",
    "dale",
    "burg",
    " Falls",
    " Springs",
    "port",
    "view",
    "ford",
    "bury",
    "mont",
    "haven",
    "ridge",
    " Creek",
    " Grove",
    "land",
    "worth",
    " Park",
    " Heights",
    " Junction",
];
const STREETS: &[&str] = &[
    "Main",
    "Oak",
    "Maple",
    "Cedar",
    "Pine",
    "Elm",
    "Washington",
    "Lake",
    "Hill",
    "Park",
    "Church",
    "High",
    "Spring",
    "Walnut",
    "Chestnut",
    "Lincoln",
    "Jefferson",
    "Madison",
    "Franklin",
    "Jackson",
    "Adams",
    "Monroe",
    "Center",
    "Mill",
    "River",
    "Sunset",
    "Highland",
    "Forest",
    "Meadow",
    "Willow",
    "Birch",
    "Cherry",
    "Dogwood",
    "Hickory",
    "Magnolia",
    "Poplar",
    "Spruce",
    "Sycamore",
    "Laurel",
    "Ridge",
    "Valley",
    "Prospect",
    "Pleasant",
    "Union",
    "Market",
    "Water",
    "School",
    "Bridge",
    "Grove",
    "Orchard",
    "North",
    "South",
    "East",
    "West",
    "1st",
    "2nd",
    "3rd",
    "4th",
    "5th",
    "6th",
    "7th",
    "8th",
    "9th",
    "10th",
    "11th",
    "12th",
    "Broad",
    "Front",
    "Liberty",
    "Academy",
    "Railroad",
    "Cottage",
    "Summit",
    "Woodland",
    "Fairview",
    "Lakeview",
    "Riverside",
    "Hillcrest",
    "Greenwood",
    "Brookside",
    "Kingston",
    "Hamilton",
    "Wilson",
    "Taylor",
    "Grant",
    "Harrison",
    "Cleveland",
    "Garfield",
    "Sherman",
    "Holly",
    "Juniper",
    "Aspen",
    "Sequoia",
    "Redwood",
    "Cypress",
    "Linden",
    "Mulberry",
    "Sassafras",
    "Bayberry",
    "Heather",
    "Clover",
    "Primrose",
    "Juniper Hill",
    "Old Mill",
    "Stone Fence",
    "Country Club",
    "Deer Run",
    "Fox Chase",
    "Quail Hollow",
];
/// Street suffixes: abbreviation and the full word.
pub(crate) const SUFFIXES: &[(&str, &str)] = &[
    ("St", "Street"),
    ("Ave", "Avenue"),
    ("Rd", "Road"),
    ("Ln", "Lane"),
    ("Dr", "Drive"),
    ("Ct", "Court"),
    ("Blvd", "Boulevard"),
    ("Way", "Way"),
    ("Pl", "Place"),
    ("Ter", "Terrace"),
    ("Cir", "Circle"),
];
/// Relative frequency of each suffix, in the order of [`SUFFIXES`].
const SUFFIX_WEIGHTS: &[u32] = &[30, 20, 15, 10, 12, 5, 2, 2, 2, 1, 1];

/// A town: name, state, its ZIP codes and its telephone area code.
pub(crate) struct Town {
    /// Town name.
    pub(crate) name: String,
    /// Two-letter state code.
    pub(crate) state: &'static str,
    /// The town's 5-digit ZIP codes.
    pub(crate) zips: Vec<String>,
    /// Area code (from the NANP-reserved N9X block, never assigned to real numbers).
    pub(crate) area_code: u16,
}

/// A household's address, as indices into the geography.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Addr {
    /// Town index.
    pub(crate) town: u16,
    /// Which of the town's ZIP codes.
    pub(crate) zip: u8,
    /// House number.
    pub(crate) house: u16,
    /// Street name index.
    pub(crate) street: u16,
    /// Street suffix index.
    pub(crate) suffix: u8,
    /// Apartment/unit number, 0 for none.
    pub(crate) unit: u16,
}

/// The fixed geography.
pub(crate) struct Geography {
    /// All towns.
    pub(crate) towns: Vec<Town>,
    /// Cumulative Zipf weights over towns.
    town_cum: Vec<u32>,
}

impl Geography {
    /// Builds the fixed town list.
    pub(crate) fn build() -> Geography {
        let mut rng = seeded(GEOGRAPHY_SEED, 0);
        // Each state gets its own N9X area codes: 80 codes, 6 per state.
        let mut codes: Vec<u16> = (2..=9u16)
            .flat_map(|n| (0..=9u16).map(move |x| n * 100 + 90 + x))
            .collect();
        super::rng::shuffle(&mut rng, &mut codes);
        let mut names = BTreeSet::new();
        let mut used_zips = BTreeSet::new();
        let mut towns = Vec::with_capacity(TOWNS);
        while towns.len() < TOWNS {
            let name = format!(
                "{}{}",
                TOWN_PREFIXES[index(&mut rng, TOWN_PREFIXES.len())],
                TOWN_SUFFIXES[index(&mut rng, TOWN_SUFFIXES.len())]
            );
            if !names.insert(name.clone()) {
                continue;
            }
            let s = index(&mut rng, STATES.len());
            let (state, lo, hi) = STATES[s];
            // Bigger towns (earlier, by the Zipf weights below) get more ZIPs, so no single
            // ZIP holds a large share of everyone.
            let n_zips = (40 / (towns.len() as u32 + 1)).max(1) + below_u32(&mut rng, 2);
            let mut zips = Vec::new();
            while zips.len() < n_zips as usize {
                let z = between(&mut rng, lo, hi) * 100 + below_u32(&mut rng, 100);
                if used_zips.insert(z) {
                    zips.push(format!("{z:05}"));
                }
            }
            let area_code = codes[s * 6 + index(&mut rng, 6)];
            towns.push(Town {
                name,
                state,
                zips,
                area_code,
            });
        }
        let mut town_cum = Vec::with_capacity(TOWNS);
        let mut total = 0u32;
        for i in 0..TOWNS {
            total += 1_000_000 / (i as u32 + 1);
            town_cum.push(total);
        }
        Geography { towns, town_cum }
    }

    /// A town index drawn by size.
    pub(crate) fn sample_town(&self, rng: &mut Rng) -> u16 {
        let total = self.town_cum.last().copied().unwrap_or(1);
        let x = below_u32(rng, total);
        self.town_cum.partition_point(|&c| c <= x) as u16
    }

    /// A new address, in `town` if given, else in a town drawn by size.
    pub(crate) fn sample_addr(&self, rng: &mut Rng, town: Option<u16>) -> Addr {
        let town = town.unwrap_or_else(|| self.sample_town(rng));
        let zips = self.towns[town as usize].zips.len();
        // House numbers: mostly small, some long rural numbers.
        let house = match below_u32(rng, 10) {
            0..=5 => between(rng, 1, 999),
            6..=8 => between(rng, 1000, 9999),
            _ => between(rng, 10000, 60000),
        } as u16;
        let unit = if below_u32(rng, 100) < 15 {
            between(rng, 1, 420) as u16
        } else {
            0
        };
        Addr {
            town,
            zip: index(rng, zips) as u8,
            house,
            street: index(rng, STREETS.len()) as u16,
            suffix: sample_suffix(rng),
            unit,
        }
    }

    /// A phone number in the town's area code: `NXX` exchange, 4-digit line, as 10 digits.
    pub(crate) fn sample_phone(&self, rng: &mut Rng, town: u16) -> u64 {
        let area = u64::from(self.towns[town as usize].area_code);
        let mut exchange = u64::from(between(rng, 200, 999));
        if exchange % 100 == 11 {
            exchange -= 1; // N11 exchanges are service codes
        }
        let line = u64::from(below_u32(rng, 10_000));
        area * 10_000_000 + exchange * 10_000 + line
    }

    /// Town of an address.
    pub(crate) fn town(&self, a: &Addr) -> &Town {
        &self.towns[a.town as usize]
    }

    /// ZIP of an address.
    pub(crate) fn zip(&self, a: &Addr) -> &str {
        let t = self.town(a);
        &t.zips[a.zip as usize % t.zips.len()]
    }
}

fn sample_suffix(rng: &mut Rng) -> u8 {
    let total: u32 = SUFFIX_WEIGHTS.iter().sum();
    let mut x = below_u32(rng, total);
    for (i, w) in SUFFIX_WEIGHTS.iter().enumerate() {
        if x < *w {
            return i as u8;
        }
        x -= w;
    }
    0
}

/// Writes the street line (`"123 Maple St"`), with the suffix spelled out or dotted per
/// `style` (0 abbreviation, 1 full word, 2 abbreviation with a period).
pub(crate) fn write_street_line(out: &mut String, a: &Addr, style: u8) {
    let (abbr, full) = SUFFIXES[a.suffix as usize % SUFFIXES.len()];
    let street = STREETS[a.street as usize % STREETS.len()];
    // Writing to a String cannot fail.
    let _ = match style {
        1 => write!(out, "{} {} {}", a.house, street, full),
        2 if abbr != full => write!(out, "{} {} {}.", a.house, street, abbr),
        _ => write!(out, "{} {} {}", a.house, street, abbr),
    };
}

/// Writes the second address line (`"Apt 12"`), empty when the address has no unit.
pub(crate) fn write_unit_line(out: &mut String, a: &Addr) {
    if a.unit == 0 {
        return;
    }
    let letters = ["A", "B", "C", "D"];
    // Writing to a String cannot fail.
    let _ = match a.unit % 5 {
        0 => write!(out, "Unit {}", a.unit),
        1 => write!(out, "# {}", a.unit),
        2 => write!(
            out,
            "Apt {}{}",
            a.unit % 9 + 1,
            letters[a.unit as usize % 4]
        ),
        _ => write!(out, "Apt {}", a.unit),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geography_is_fixed_and_consistent() {
        let a = Geography::build();
        let b = Geography::build();
        assert_eq!(a.towns.len(), TOWNS);
        let mut zips = BTreeSet::new();
        for (ta, tb) in a.towns.iter().zip(&b.towns) {
            assert_eq!(ta.name, tb.name);
            assert_eq!(ta.zips, tb.zips);
            for z in &ta.zips {
                assert_eq!(z.len(), 5);
                assert!(zips.insert(z.clone()), "zip shared by two towns");
            }
            assert_eq!((ta.area_code / 10) % 10, 9, "area code not N9X");
        }
    }

    #[test]
    fn towns_are_zipf_sized_and_addresses_render() {
        let g = Geography::build();
        let mut rng = seeded(5, 0);
        let mut counts = vec![0u32; TOWNS];
        for _ in 0..30_000 {
            counts[g.sample_town(&mut rng) as usize] += 1;
        }
        assert!(
            counts[0] > 10 * counts[TOWNS / 2],
            "{} vs {}",
            counts[0],
            counts[TOWNS / 2]
        );
        let a = g.sample_addr(&mut rng, Some(3));
        assert_eq!(a.town, 3);
        let mut s = String::new();
        write_street_line(&mut s, &a, 0);
        assert!(s.starts_with(&a.house.to_string()), "{s}");
        let p = g.sample_phone(&mut rng, 3);
        assert_eq!(p.to_string().len(), 10);
        assert_eq!(p / 10_000_000, u64::from(g.towns[3].area_code));
    }
}
