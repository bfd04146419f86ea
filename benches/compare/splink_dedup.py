"""Deduplicate an empi synthetic records.csv with Splink (DuckDB backend), the way a
competent user would configure it, and write `source,local_id,cluster_id`.

Comparisons: given and family names (Jaro-Winkler levels, term-frequency adjusted), date
of birth (exact / within a month / a year / ten years, as Splink's DOB comparison does),
sex, address (street and postcode together: exact, street Jaro-Winkler, postcode only),
phone and national id (edit distance), email. Blocking rules mirror empi's (family name + birth year, given name
+ birth date, birth date + postcode, national id, phone, given + family name, email).
λ from deterministic rules, u by random sampling, m by expectation-maximisation.

usage: splink_dedup.py RECORDS_CSV OUT_CSV [--threshold P]
"""

import argparse
import sys
import time

import duckdb
import splink.comparison_level_library as cll
import splink.comparison_library as cl
from splink import Linker, SettingsCreator, block_on
from splink.backends.duckdb import DuckDBAPI

ap = argparse.ArgumentParser()
ap.add_argument("records")
ap.add_argument("out")
ap.add_argument("--threshold", type=float, default=0.999,
                help="match probability at which pairs are clustered")
ap.add_argument("--save-model", help="also write the trained model (JSON) here")
args = ap.parse_args()

t0 = time.time()
con = duckdb.connect()
# Cleaning a user would do in SQL after profiling the file: lower-case and trim names,
# digits-only phone and national id, 5-character postcode, nulls for empty strings, and
# nulls for the registration placeholders profiling shows ("baby boy", "unknown",
# 1900-01-01, 123-45-6789, repeated-digit numbers) so they cannot link strangers.
con.execute(f"""
    CREATE TABLE raw AS
    SELECT
        source || ':' || local_id AS unique_id,
        source, local_id,
        NULLIF(lower(trim(given_name)), '') AS given_name,
        NULLIF(lower(trim(family_name)), '') AS family_name,
        NULLIF(lower(trim(middle_name)), '') AS middle_name,
        NULLIF(trim(CAST(birth_date AS VARCHAR)), '') AS birth_date,
        NULLIF(upper(trim(sex)), '') AS sex,
        NULLIF(lower(trim(address_line)), '') AS street,
        NULLIF(substr(regexp_replace(CAST(postal_code AS VARCHAR), '[^0-9A-Za-z]', '', 'g'), 1, 5), '') AS postcode,
        NULLIF(right(regexp_replace(CAST(phone AS VARCHAR), '[^0-9]', '', 'g'), 10), '') AS phone,
        NULLIF(lower(trim(email)), '') AS email,
        NULLIF(regexp_replace(CAST(national_id AS VARCHAR), '[^0-9A-Za-z]', '', 'g'), '') AS national_id
    FROM read_csv('{args.records}', header=true, all_varchar=true)
""")
con.execute("""
    CREATE TABLE people AS
    SELECT unique_id, source, local_id,
        CASE WHEN given_name IN ('baby', 'baby boy', 'baby girl', 'boy', 'girl', 'infant',
             'newborn', 'unknown', 'unk', 'trauma', 'patient', 'test', 'twin a', 'twin b',
             'male', 'female', 'nn', 'fnu')
             OR (given_name IN ('john', 'jane') AND family_name = 'doe')
             THEN NULL ELSE given_name END AS given_name,
        CASE WHEN family_name IN ('unknown', 'unk', 'doe', 'trauma', 'patient', 'test', 'lnu')
             THEN NULL ELSE family_name END AS family_name,
        middle_name,
        CASE WHEN birth_date IN ('1900-01-01', '1901-01-01', '1800-01-01', '1970-01-01')
             THEN NULL ELSE birth_date END AS birth_date,
        sex, street, postcode,
        CASE WHEN length(phone) < 7 OR phone IN ('1234567890')
             OR regexp_full_match(phone, '0+|1+|2+|3+|4+|5+|6+|7+|8+|9+')
             THEN NULL ELSE phone END AS phone,
        email,
        CASE WHEN national_id IN ('123456789', '987654321')
             OR regexp_full_match(national_id, '0+|1+|2+|3+|4+|5+|6+|7+|8+|9+')
             THEN NULL ELSE national_id END AS national_id
    FROM raw
""")

db_api = DuckDBAPI(connection=con)
settings = SettingsCreator(
    link_type="dedupe_only",
    comparisons=[
        cl.NameComparison("given_name").configure(term_frequency_adjustments=True),
        cl.NameComparison("family_name").configure(term_frequency_adjustments=True),
        cl.DateOfBirthComparison("birth_date", input_is_string=True),
        cl.ExactMatch("sex"),
        # One address comparison, not street and postcode separately: they move
        # together, and counting both as independent evidence double-counts households.
        cl.CustomComparison(
            output_column_name="address",
            comparison_levels=[
                cll.Or(cll.NullLevel("street"), cll.NullLevel("postcode")),
                cll.And(cll.ExactMatchLevel("street"), cll.ExactMatchLevel("postcode")),
                cll.And(cll.JaroWinklerLevel("street", 0.9), cll.ExactMatchLevel("postcode")),
                cll.ExactMatchLevel("postcode"),
                cll.ElseLevel(),
            ],
        ),
        cl.DamerauLevenshteinAtThresholds("phone", 1),
        cl.DamerauLevenshteinAtThresholds("national_id", 1),
        cl.EmailComparison("email"),
    ],
    blocking_rules_to_generate_predictions=[
        block_on("family_name", "substr(birth_date, 1, 4)"),
        block_on("given_name", "birth_date"),
        block_on("birth_date", "postcode"),
        block_on("national_id"),
        block_on("phone"),
        block_on("given_name", "family_name"),
        block_on("email"),
    ],
    retain_matching_columns=False,
    retain_intermediate_calculation_columns=False,
)
linker = Linker(db_api.register("people"), settings)
linker.training.estimate_probability_two_random_records_match(
    [block_on("national_id", "birth_date"), block_on("email", "birth_date")], recall=0.6
)
linker.training.estimate_u_using_random_sampling(max_pairs=5e6, seed=7)
linker.training.estimate_parameters_using_expectation_maximisation(
    block_on("birth_date"), record_sample_proportion=1.0
)
linker.training.estimate_parameters_using_expectation_maximisation(
    block_on("family_name", "given_name"), record_sample_proportion=1.0
)
if args.save_model:
    linker.misc.save_model_to_json(args.save_model, overwrite=True)
t_train = time.time()
pred = linker.inference.predict(threshold_match_probability=0.5)
clusters = linker.clustering.cluster_pairwise_predictions_at_threshold(
    pred, threshold_match_probability=args.threshold
)
rel = clusters.as_duckdbpyrelation()
con.register("clusters_rel", rel)
con.execute(f"""
    COPY (SELECT p.source, p.local_id, c.cluster_id
          FROM clusters_rel c JOIN people p USING (unique_id))
    TO '{args.out}' (HEADER, DELIMITER ',')
""")
t_end = time.time()
print(f"splink: trained in {t_train - t0:.1f}s, predicted and clustered in "
      f"{t_end - t_train:.1f}s", file=sys.stderr)
