"""ebm-repro: reproduction workflow for IGEBM (Du & Mordatch 2019) and ICD (Du et al. 2021)."""
