//! Block templates from the node, and what Hearth builds from them: the coinbase, the merkle
//! branch, and per-extranonce jobs. Everything here is pure (no I/O) and consensus-critical.

pub mod coinbase;
pub mod gbt;

pub use coinbase::{
    CoinbaseTemplate, EXTRANONCE_SIZE, build_coinbase, coinbase_merkle_branch, merkle_root,
};
pub use gbt::{BlockTemplate, GbtError, TemplateTx, parse_template, parse_template_reply};

#[cfg(test)]
pub(crate) mod tests {
    use bitcoin::hashes::Hash;
    use bitcoin::{ScriptBuf, TxMerkleNode, Txid};

    use super::coinbase::{CoinbaseError, witness_commitment_script};
    use super::*;

    /// The Bitaxe Gamma share for mainnet height 901,936 (docs/bm13xx-vectors.md §5.3, from
    /// mujina's test_data.rs): the pool's coinbase halves around extranonce1 `4128064f` and
    /// extranonce2 `17000000`, and the coinbase's twelve-hash merkle branch.
    pub(crate) mod bitaxe {
        pub(crate) const COINB1: &str = "02000000010000000000000000000000000000000000000000000000000000000000000000ffffffff170330c30d5075626c69632d506f6f6c";
        pub(crate) const COINB2: &str = "ffffffff02e5b5c61200000000220020984a77c289084ff2d434c316bdada021c6c183d507c8a20d3b159b09ac02fe280000000000000000266a24aa21a9edb98ee50410ed4abd48401ed484fc874409d086a3faf0816136a8ad6168314c5800000000";
        pub(crate) const BRANCH: [&str; 12] = [
            "21af451ddb51e887ff1feb5592b87290098565035eb8500031aedcc776d4e72a",
            "c5af269519c809a9546d5a58ca6445d3dbb80cb7045448ecc48309af034da8f8",
            "fb9f8f9959f6bb0ceb63fa53aed1d5a615c6b6d3f50a468ea89a45a1234bda74",
            "a4f4fee8e5fc19ca8d93e67b9236c37ddb864982010434745c0abfe9b914980c",
            "33092206642744fbe5499c3e621cd5c6b52733e54fbebd869f070082b807f740",
            "3b857e32c5cff4864efab967b9a456ca03b2167ab96bd9076ce294c8a67a7fe2",
            "881a07cd881d0c3e590b4b090ea8d58e1439dc56c63686f7de23c47045441e30",
            "315e4dbcc8e7b1c9d594a73978268791880dddb2c26eec8e75768668dad99d80",
            "69952b77c632be16b1ac7ac7048f13d4e962b2e215d79a343f01e6e281d7c304",
            "fc63eb4392c4d6c6d689788875fca35143fdcd4f4a82e8698e0e441751a70b4a",
            "09e419bbe20aa3a7640f1b91f50599ceddff899e90d3f18951ad5418c4850a6b",
            "004978aa346b4f1880bcadb3ca3792d771ee6aeca427f61e74baba44b75cfb88",
        ];
        /// The branch as merkle nodes.
        pub(crate) fn branch() -> Vec<bitcoin::TxMerkleNode> {
            use bitcoin::hashes::Hash as _;
            BRANCH
                .iter()
                .map(|b| {
                    bitcoin::TxMerkleNode::from_byte_array(
                        hex::decode(b).unwrap().try_into().unwrap(),
                    )
                })
                .collect()
        }
    }

    /// A GBT reply shaped like Bitcoin Core's (regtest, one transaction).
    pub(crate) fn sample_gbt(height: u32) -> serde_json::Value {
        let tx = "0200000001aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa0000000000ffffffff01e803000000000000160014751e76e8199196d454941c45d1b3a323f1433bd600000000";
        let mut template = serde_json::json!({
            "capabilities": ["proposal"],
            "version": 536870912,
            "rules": ["csv", "!segwit", "taproot"],
            "vbavailable": {},
            "vbrequired": 0,
            "previousblockhash": "3d0e2b0b1c6e0dd3eb3f4bd5e8b2b5a4a5f6e7d8c9b0a1f2e3d4c5b6a7980011",
            "transactions": [{
                "data": tx,
                "txid": "1111111111111111111111111111111111111111111111111111111111111111",
                "hash": "2222222222222222222222222222222222222222222222222222222222222222",
                "depends": [], "fee": 1000, "sigops": 4, "weight": 400
            }],
            "coinbaseaux": {},
            "coinbasevalue": 5000001000u64,
            "longpollid": "3d0e2b0b1c6e0dd3eb3f4bd5e8b2b5a4a5f6e7d8c9b0a1f2e3d4c5b6a79800111",
            "target": "7fffff0000000000000000000000000000000000000000000000000000000000",
            "mintime": 1700000000,
            "mutable": ["time", "transactions", "prevblock"],
            "noncerange": "00000000ffffffff",
            "sigoplimit": 80000,
            "sizelimit": 4000000,
            "weightlimit": 4000000,
            "curtime": 1700000100,
            "bits": "207fffff",
            "height": height,
        });
        let parsed = parse_template(template.to_string().as_bytes()).unwrap();
        template["default_witness_commitment"] =
            serde_json::json!(hex::encode(witness_commitment_script(&parsed).as_bytes()));
        template
    }

    fn payout() -> ScriptBuf {
        ScriptBuf::from_hex("0014751e76e8199196d454941c45d1b3a323f1433bd6").unwrap()
    }

    #[test]
    fn the_longest_coinbase_fits_every_miners_buffer() {
        // The longest payout scripts (P2WSH and P2TR, 34 bytes), the witness commitment, the
        // full 8-byte extranonce, a u32 height and the longest tag the configuration takes.
        let tag = vec![b'x'; crate::config::MAX_TAG_LEN];
        let p2wsh = ScriptBuf::new_p2wsh(&bitcoin::WScriptHash::all_zeros());
        let p2tr = ScriptBuf::new_witness_program(
            &bitcoin::WitnessProgram::new(bitcoin::WitnessVersion::V1, &[0u8; 32]).unwrap(),
        );
        for script in [&p2wsh, &p2tr] {
            assert_eq!(script.len(), 34);
            let longest = coinbase::longest_coinbase_len(script, &tag).unwrap();
            // NerdMiner's buffer (the smallest of the common miners).
            assert!(longest <= 255, "{longest}");
            assert_eq!(longest, 217);
        }
        // A real template's coinbase is never longer than the bound.
        let t = parse_template(sample_gbt(100).to_string().as_bytes()).unwrap();
        let real = build_coinbase(&t, &p2wsh, &tag).unwrap();
        assert!(
            real.prefix.len() + EXTRANONCE_SIZE + real.suffix.len()
                <= coinbase::longest_coinbase_len(&p2wsh, &tag).unwrap()
        );
    }

    #[test]
    fn a_core_shaped_reply_parses() {
        let t = parse_template(sample_gbt(5).to_string().as_bytes()).unwrap();
        assert_eq!(t.height, 5);
        assert_eq!(t.bits.to_consensus(), 0x207f_ffff);
        assert_eq!(t.transactions.len(), 1);
        assert_eq!(t.coinbase_value.to_sat(), 5_000_001_000);
        assert_eq!(
            t.prev_blockhash.to_string(),
            "3d0e2b0b1c6e0dd3eb3f4bd5e8b2b5a4a5f6e7d8c9b0a1f2e3d4c5b6a7980011"
        );
    }

    #[test]
    fn every_malformed_field_is_named() {
        let cases: &[(&str, serde_json::Value, &str)] = &[
            (
                "previousblockhash",
                serde_json::json!("zz"),
                "previousblockhash",
            ),
            ("bits", serde_json::json!("207fff"), "bits"),
            ("bits", serde_json::json!("1d00ffff"), "target"),
            ("target", serde_json::json!("00"), "target"),
            ("height", serde_json::json!(0), "height"),
            ("coinbasevalue", serde_json::json!(-1), "reply"),
            (
                "coinbasevalue",
                serde_json::json!(2_100_000_000_000_001u64),
                "coinbasevalue",
            ),
            ("version", serde_json::json!(1u64 << 40), "version"),
            ("mintime", serde_json::json!(1800000000), "mintime"),
            (
                "default_witness_commitment",
                serde_json::json!("xyz"),
                "default_witness_commitment",
            ),
        ];
        for (field, value, named) in cases {
            let mut t = sample_gbt(5);
            t[*field] = value.clone();
            let err = parse_template(t.to_string().as_bytes()).unwrap_err();
            assert!(err.field.starts_with(named), "{field}={value}: {err}");
        }
        let mut t = sample_gbt(5);
        t["transactions"][0]["data"] = serde_json::json!("00");
        assert_eq!(
            parse_template(t.to_string().as_bytes()).unwrap_err().field,
            "transactions[0].data"
        );
        let mut t = sample_gbt(5);
        t.as_object_mut().unwrap().remove("previousblockhash");
        assert!(
            parse_template(t.to_string().as_bytes())
                .unwrap_err()
                .reason
                .contains("previousblockhash")
        );
        let text = sample_gbt(5).to_string();
        assert!(
            parse_template(&text.as_bytes()[..text.len() / 2]).is_err(),
            "truncated"
        );
        assert!(parse_template(b"").is_err());
        assert!(parse_template_reply(br#"{"result":null,"error":null}"#.to_vec()).is_err());
    }

    #[test]
    fn deployment_bits_are_read() {
        let t = parse_template(sample_gbt(5).to_string().as_bytes()).unwrap();
        assert_eq!((t.vb_required, t.vb_available), (0, 0));
        let mut gbt = sample_gbt(5);
        gbt["vbrequired"] = serde_json::json!(0x0000_4000);
        gbt["vbavailable"] = serde_json::json!({"testdummy": 28, "other": 2});
        let t = parse_template(gbt.to_string().as_bytes()).unwrap();
        assert_eq!(t.vb_required, 0x0000_4000);
        assert_eq!(t.vb_available, 0x1000_0004);
        let mut gbt = sample_gbt(5);
        gbt["vbrequired"] = serde_json::json!(1u64 << 40);
        let err = parse_template(gbt.to_string().as_bytes()).unwrap_err();
        assert_eq!(err.field, "vbrequired", "{err}");
        // A deployment bit outside BIP9's range is ignored, not a reason to stop mining.
        let mut gbt = sample_gbt(5);
        gbt["vbavailable"] = serde_json::json!({"x": 29, "testdummy": 28});
        let t = parse_template(gbt.to_string().as_bytes()).unwrap();
        assert_eq!(t.vb_available, 0x1000_0000);
    }

    #[test]
    fn a_signet_coinbase_always_commits_to_witnesses() {
        // Core's signet templates carry the `!signet` rule and a commitment; a signet block
        // without one is invalid even with no transactions (signet.cpp), so Hearth adds it
        // itself should the node leave it out.
        let mut gbt = sample_gbt(5);
        gbt["rules"] = serde_json::json!(["csv", "!segwit", "taproot", "!signet"]);
        let with = parse_template(gbt.to_string().as_bytes()).unwrap();
        assert!(with.is_signet());
        gbt.as_object_mut()
            .unwrap()
            .remove("default_witness_commitment");
        let without = parse_template(gbt.to_string().as_bytes()).unwrap();
        for t in [&with, &without] {
            let cb = build_coinbase(t, &payout(), b"").unwrap();
            let tx = cb.transaction(&[0; EXTRANONCE_SIZE]).unwrap();
            assert_eq!(
                tx.output.last().map(|o| o.script_pubkey.clone()),
                Some(witness_commitment_script(t))
            );
            assert_eq!(tx.input[0].witness.len(), 1);
        }
        // Elsewhere a template without a commitment gets none (pre-segwit templates).
        let mut plain = without.clone();
        plain.rules = vec!["csv".into()];
        let cb = build_coinbase(&plain, &payout(), b"").unwrap();
        assert_eq!(cb.transaction(&[0; 8]).unwrap().output.len(), 1);
    }

    #[test]
    fn bip34_heights_are_pushed_minimally() {
        // height → expected scriptSig prefix (Core: CScript() << nHeight).
        let cases: &[(u32, &str)] = &[
            (1, "51"),
            (16, "60"),
            (17, "0111"),
            (127, "017f"),
            (128, "028000"),
            (255, "02ff00"),
            (256, "020001"),
            (32767, "02ff7f"),
            (32768, "03008000"),
            (839_900, "03dcd00c"),
        ];
        for (height, prefix) in cases {
            let t = parse_template(sample_gbt(*height).to_string().as_bytes()).unwrap();
            let cb = build_coinbase(&t, &payout(), b"/hearth/").unwrap();
            let tx = cb.transaction(&[0u8; EXTRANONCE_SIZE]).unwrap();
            let script = hex::encode(tx.input[0].script_sig.as_bytes());
            assert!(script.starts_with(prefix), "height {height}: {script}");
            assert!(tx.input[0].script_sig.len() <= 100);
        }
    }

    #[test]
    fn the_extranonce_lands_in_the_scriptsig_and_changes_the_txid() {
        let t = parse_template(sample_gbt(500).to_string().as_bytes()).unwrap();
        let cb = build_coinbase(&t, &payout(), b"tag").unwrap();
        let en = [1, 2, 3, 4, 5, 6, 7, 8];
        let tx = cb.transaction(&en).unwrap();
        assert!(
            tx.input[0]
                .script_sig
                .as_bytes()
                .windows(8)
                .any(|w| w == en)
        );
        assert_eq!(cb.txid(&en), tx.compute_txid());
        assert_ne!(cb.txid(&en), cb.txid(&[0; 8]));
        // Whole reward to the payout, commitment last, witness reserved value present.
        assert_eq!(tx.output[0].value, t.coinbase_value);
        assert_eq!(tx.output[0].script_pubkey, payout());
        assert_eq!(
            tx.output.last().map(|o| o.script_pubkey.clone()),
            t.default_witness_commitment
        );
        assert_eq!(tx.input[0].witness.len(), 1);
    }

    #[test]
    fn limits_and_commitments_are_enforced() {
        let t = parse_template(sample_gbt(500).to_string().as_bytes()).unwrap();
        let err = build_coinbase(&t, &payout(), &[b'x'; 90]).unwrap_err();
        assert!(
            matches!(err, CoinbaseError::ScriptSigTooLong { .. }),
            "{err}"
        );
        let mut wrong = t.clone();
        wrong.default_witness_commitment = Some(ScriptBuf::from_hex("6a24aa21a9ed00").unwrap());
        assert!(matches!(
            build_coinbase(&wrong, &payout(), b"").unwrap_err(),
            CoinbaseError::WitnessCommitmentMismatch { .. }
        ));
        let mut heavy = t.clone();
        heavy.weight_limit = 1000;
        assert!(matches!(
            build_coinbase(&heavy, &payout(), b"").unwrap_err(),
            CoinbaseError::OverLimit { what: "weight", .. }
        ));
        let mut sigops = t;
        sigops.sigop_limit = 4;
        let p2pkh =
            ScriptBuf::from_hex("76a914751e76e8199196d454941c45d1b3a323f1433bd688ac").unwrap();
        assert!(matches!(
            build_coinbase(&sigops, &p2pkh, b"").unwrap_err(),
            CoinbaseError::OverLimit { what: "sigop", .. }
        ));
    }

    #[test]
    fn merkle_branches_give_the_same_root_as_rust_bitcoin() {
        for n in 0..40u8 {
            let txids: Vec<Txid> = (0..n)
                .map(|i| Txid::from_byte_array([i.wrapping_mul(37).wrapping_add(1); 32]))
                .collect();
            let coinbase = Txid::from_byte_array([0xCC; 32]);
            let all = std::iter::once(coinbase)
                .chain(txids.iter().copied())
                .map(|t| t.to_raw_hash());
            let expected =
                bitcoin::merkle_tree::calculate_root(all).map(TxMerkleNode::from_raw_hash);
            assert_eq!(
                Some(merkle_root(coinbase, &coinbase_merkle_branch(&txids))),
                expected,
                "{n} transactions"
            );
        }
    }
}
