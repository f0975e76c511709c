//! Policy shapes read from trees and SQL that Postgres 15 produced for the
//! demo policies and a few others (`pg_policy.polqual`, `pg_get_expr`).

use super::*;

const DOCUMENTS_MEMBERS: (&str, &str) = (
    r#"{SUBLINK :subLinkType 2 :subLinkId 0 :testexpr {OPEXPR :opno 2972 :opfuncid 2956 :opresulttype 16 :opretset false :opcollid 0 :inputcollid 0 :args ({VAR :varno 1 :varattno 2 :vartype 2950 :vartypmod -1 :varcollid 0 :varlevelsup 0 :varnosyn 1 :varattnosyn 2 :location 3647} {PARAM :paramkind 2 :paramid 1 :paramtype 2950 :paramtypmod -1 :paramcollid 0 :location -1}) :location 3657} :operName ("=") :subselect {QUERY :commandType 1 :querySource 0 :canSetTag true :utilityStmt <> :resultRelation 0 :hasAggs false :hasWindowFuncs false :hasTargetSRFs true :hasSubLinks false :hasDistinctOn false :hasRecursive false :hasModifyingCTE false :hasForUpdate false :hasRowSecurity false :isReturn false :cteList <> :rtable <> :jointree {FROMEXPR :fromlist <> :quals <>} :targetList ({TARGETENTRY :expr {FUNCEXPR :funcid 136182 :funcresulttype 2950 :funcretset true :funcvariadic false :funcformat 0 :funccollid 0 :inputcollid 0 :args <> :location 3668} :resno 1 :resname my_tenant_ids :ressortgroupref 0 :resorigtbl 0 :resorigcol 0 :resjunk false}) :override 0 :onConflict <> :returningList <> :groupClause <> :groupDistinct false :groupingSets <> :havingQual <> :windowClause <> :distinctClause <> :sortClause <> :limitOffset <> :limitCount <> :limitOption 0 :rowMarks <> :setOperations <> :constraintDeps <> :withCheckOptions <> :mergeActionList <> :mergeUseOuterJoin false :stmt_location 0 :stmt_len 0} :location 3657}"#,
    r#"(tenant_id IN ( SELECT public.my_tenant_ids() AS my_tenant_ids))"#,
);

const NOTIFICATIONS_RECIPIENT: (&str, &str) = (
    r#"{OPEXPR :opno 2972 :opfuncid 2956 :opresulttype 16 :opretset false :opcollid 0 :inputcollid 0 :args ({VAR :varno 1 :varattno 3 :vartype 2950 :vartypmod -1 :varcollid 0 :varlevelsup 0 :varnosyn 1 :varattnosyn 3 :location 3364} {FUNCEXPR :funcid 136181 :funcresulttype 2950 :funcretset false :funcvariadic false :funcformat 0 :funccollid 0 :inputcollid 0 :args <> :location 3374}) :location 3372}"#,
    r#"(user_id = public.current_user_id())"#,
);

const USERS_SELF_OR_COLLEAGUE: (&str, &str) = (
    r#"{BOOLEXPR :boolop or :args ({OPEXPR :opno 2972 :opfuncid 2956 :opresulttype 16 :opretset false :opcollid 0 :inputcollid 0 :args ({VAR :varno 1 :varattno 1 :vartype 2950 :vartypmod -1 :varcollid 0 :varlevelsup 0 :varnosyn 1 :varattnosyn 1 :location 2983} {FUNCEXPR :funcid 136181 :funcresulttype 2950 :funcretset false :funcvariadic false :funcformat 0 :funccollid 0 :inputcollid 0 :args <> :location 2988}) :location 2986} {SUBLINK :subLinkType 2 :subLinkId 0 :testexpr {OPEXPR :opno 2972 :opfuncid 2956 :opresulttype 16 :opretset false :opcollid 0 :inputcollid 0 :args ({VAR :varno 1 :varattno 1 :vartype 2950 :vartypmod -1 :varcollid 0 :varlevelsup 0 :varnosyn 1 :varattnosyn 1 :location 3025} {PARAM :paramkind 2 :paramid 1 :paramtype 2950 :paramtypmod -1 :paramcollid 0 :location -1}) :location 3028} :operName ("=") :subselect {QUERY :commandType 1 :querySource 0 :canSetTag true :utilityStmt <> :resultRelation 0 :hasAggs false :hasWindowFuncs false :hasTargetSRFs false :hasSubLinks true :hasDistinctOn false :hasRecursive false :hasModifyingCTE false :hasForUpdate false :hasRowSecurity false :isReturn false :cteList <> :rtable ({RANGETBLENTRY :alias {ALIAS :aliasname m :colnames <>} :eref {ALIAS :aliasname m :colnames ("tenant_id" "user_id" "role")} :rtekind 0 :relid 136124 :relkind r :rellockmode 1 :tablesample <> :lateral false :inh true :inFromCl true :requiredPerms 2 :checkAsUser 0 :selectedCols (b 8 9) :insertedCols (b) :updatedCols (b) :extraUpdatedCols (b) :securityQuals <>}) :jointree {FROMEXPR :fromlist ({RANGETBLREF :rtindex 1}) :quals {SUBLINK :subLinkType 2 :subLinkId 0 :testexpr {OPEXPR :opno 2972 :opfuncid 2956 :opresulttype 16 :opretset false :opcollid 0 :inputcollid 0 :args ({VAR :varno 1 :varattno 1 :vartype 2950 :vartypmod -1 :varcollid 0 :varlevelsup 0 :varnosyn 1 :varattnosyn 1 :location 3101} {PARAM :paramkind 2 :paramid 1 :paramtype 2950 :paramtypmod -1 :paramcollid 0 :location -1}) :location 3113} :operName ("=") :subselect {QUERY :commandType 1 :querySource 0 :canSetTag true :utilityStmt <> :resultRelation 0 :hasAggs false :hasWindowFuncs false :hasTargetSRFs true :hasSubLinks false :hasDistinctOn false :hasRecursive false :hasModifyingCTE false :hasForUpdate false :hasRowSecurity false :isReturn false :cteList <> :rtable <> :jointree {FROMEXPR :fromlist <> :quals <>} :targetList ({TARGETENTRY :expr {FUNCEXPR :funcid 136182 :funcresulttype 2950 :funcretset true :funcvariadic false :funcformat 0 :funccollid 0 :inputcollid 0 :args <> :location 3124} :resno 1 :resname my_tenant_ids :ressortgroupref 0 :resorigtbl 0 :resorigcol 0 :resjunk false}) :override 0 :onConflict <> :returningList <> :groupClause <> :groupDistinct false :groupingSets <> :havingQual <> :windowClause <> :distinctClause <> :sortClause <> :limitOffset <> :limitCount <> :limitOption 0 :rowMarks <> :setOperations <> :constraintDeps <> :withCheckOptions <> :mergeActionList <> :mergeUseOuterJoin false :stmt_location 0 :stmt_len 0} :location 3113}} :targetList ({TARGETENTRY :expr {VAR :varno 1 :varattno 2 :vartype 2950 :vartypmod -1 :varcollid 0 :varlevelsup 0 :varnosyn 1 :varattnosyn 2 :location 3039} :resno 1 :resname user_id :ressortgroupref 0 :resorigtbl 136124 :resorigcol 2 :resjunk false}) :override 0 :onConflict <> :returningList <> :groupClause <> :groupDistinct false :groupingSets <> :havingQual <> :windowClause <> :distinctClause <> :sortClause <> :limitOffset <> :limitCount <> :limitOption 0 :rowMarks <> :setOperations <> :constraintDeps <> :withCheckOptions <> :mergeActionList <> :mergeUseOuterJoin false :stmt_location 0 :stmt_len 0} :location 3028}) :location 3022}"#,
    r#"((id = public.current_user_id()) OR (id IN ( SELECT m.user_id
   FROM public.memberships m
  WHERE (m.tenant_id IN ( SELECT public.my_tenant_ids() AS my_tenant_ids)))))"#,
);

const P_AND: (&str, &str) = (
    r#"{BOOLEXPR :boolop and :args ({OPEXPR :opno 98 :opfuncid 67 :opresulttype 16 :opretset false :opcollid 0 :inputcollid 100 :args ({VAR :varno 1 :varattno 2 :vartype 25 :vartypmod -1 :varcollid 100 :varlevelsup 0 :varnosyn 1 :varattnosyn 2 :location 32} {OPEXPR :opno 3477 :opfuncid 3214 :opresulttype 25 :opretset false :opcollid 100 :inputcollid 100 :args ({COERCEVIAIO :arg {FUNCEXPR :funcid 3294 :funcresulttype 25 :funcretset false :funcvariadic false :funcformat 0 :funccollid 100 :inputcollid 100 :args ({CONST :consttype 25 :consttypmod -1 :constcollid 100 :constlen -1 :constbyval false :constisnull false :location 56 :constvalue 22 [ 88 0 0 0 114 101 113 117 101 115 116 46 106 119 116 46 99 108 97 105 109 115 ]} {CONST :consttype 16 :consttypmod -1 :constcollid 0 :constlen 1 :constbyval true :constisnull false :location 78 :constvalue 1 [ 1 0 0 0 0 0 0 0 ]}) :location 40} :resulttype 3802 :resultcollid 0 :coerceformat 1 :location 83} {CONST :consttype 25 :consttypmod -1 :constcollid 100 :constlen -1 :constbyval false :constisnull false :location 95 :constvalue 7 [ 28 0 0 0 115 117 98 ]}) :location 91}) :location 38} {OPEXPR :opno 419 :opfuncid 477 :opresulttype 16 :opretset false :opcollid 0 :inputcollid 0 :args ({VAR :varno 1 :varattno 3 :vartype 20 :vartypmod -1 :varcollid 0 :varlevelsup 0 :varnosyn 1 :varattnosyn 3 :location 105} {CONST :consttype 23 :consttypmod -1 :constcollid 0 :constlen 4 :constbyval true :constisnull false :location 109 :constvalue 4 [ 0 0 0 0 0 0 0 0 ]}) :location 107}) :location 101}"#,
    r#"((owner = ((current_setting('request.jwt.claims'::text, true))::jsonb ->> 'sub'::text)) AND (n > 0))"#,
);

const P_CORR: (&str, &str) = (
    r#"{SUBLINK :subLinkType 2 :subLinkId 0 :testexpr {OPEXPR :opno 410 :opfuncid 467 :opresulttype 16 :opretset false :opcollid 0 :inputcollid 0 :args ({VAR :varno 1 :varattno 3 :vartype 20 :vartypmod -1 :varcollid 0 :varlevelsup 0 :varnosyn 1 :varattnosyn 3 :location 33} {PARAM :paramkind 2 :paramid 1 :paramtype 20 :paramtypmod -1 :paramcollid 0 :location -1}) :location 35} :operName ("=") :subselect {QUERY :commandType 1 :querySource 0 :canSetTag true :utilityStmt <> :resultRelation 0 :hasAggs false :hasWindowFuncs false :hasTargetSRFs false :hasSubLinks false :hasDistinctOn false :hasRecursive false :hasModifyingCTE false :hasForUpdate false :hasRowSecurity false :isReturn false :cteList <> :rtable ({RANGETBLENTRY :alias {ALIAS :aliasname x :colnames <>} :eref {ALIAS :aliasname x :colnames ("id" "owner" "n" "at" "label")} :rtekind 0 :relid 142615 :relkind r :rellockmode 1 :tablesample <> :lateral false :inh true :inFromCl true :requiredPerms 2 :checkAsUser 0 :selectedCols (b 8 10) :insertedCols (b) :updatedCols (b) :extraUpdatedCols (b) :securityQuals <>}) :jointree {FROMEXPR :fromlist ({RANGETBLREF :rtindex 1}) :quals {OPEXPR :opno 96 :opfuncid 65 :opresulttype 16 :opretset false :opcollid 0 :inputcollid 0 :args ({VAR :varno 1 :varattno 1 :vartype 23 :vartypmod -1 :varcollid 0 :varlevelsup 0 :varnosyn 1 :varattnosyn 1 :location 65} {VAR :varno 1 :varattno 1 :vartype 23 :vartypmod -1 :varcollid 0 :varlevelsup 1 :varnosyn 1 :varattnosyn 1 :location 72}) :location 70}} :targetList ({TARGETENTRY :expr {VAR :varno 1 :varattno 3 :vartype 20 :vartypmod -1 :varcollid 0 :varlevelsup 0 :varnosyn 1 :varattnosyn 3 :location 46} :resno 1 :resname n :ressortgroupref 0 :resorigtbl 142615 :resorigcol 3 :resjunk false}) :override 0 :onConflict <> :returningList <> :groupClause <> :groupDistinct false :groupingSets <> :havingQual <> :windowClause <> :distinctClause <> :sortClause <> :limitOffset <> :limitCount <> :limitOption 0 :rowMarks <> :setOperations <> :constraintDeps <> :withCheckOptions <> :mergeActionList <> :mergeUseOuterJoin false :stmt_location 0 :stmt_len 0} :location 35}"#,
    r#"(n IN ( SELECT x.n
   FROM public.t x
  WHERE (x.id = t.id)))"#,
);

const P_LIT: (&str, &str) = (
    r#"{OPEXPR :opno 98 :opfuncid 67 :opresulttype 16 :opretset false :opcollid 0 :inputcollid 100 :args ({CONST :consttype 25 :consttypmod -1 :constcollid 100 :constlen -1 :constbyval false :constisnull false :location 32 :constvalue 15 [ 60 0 0 0 105 116 39 115 32 61 32 104 101 114 101 ]} {VAR :varno 1 :varattno 2 :vartype 25 :vartypmod -1 :varcollid 100 :varlevelsup 0 :varnosyn 1 :varattnosyn 2 :location 49}) :location 47}"#,
    r#"('it''s = here'::text = owner)"#,
);

const P_TIME: (&str, &str) = (
    r#"{OPEXPR :opno 1324 :opfuncid 1157 :opresulttype 16 :opretset false :opcollid 0 :inputcollid 0 :args ({VAR :varno 1 :varattno 4 :vartype 1184 :vartypmod -1 :varcollid 0 :varlevelsup 0 :varnosyn 1 :varattnosyn 4 :location 33} {FUNCEXPR :funcid 1299 :funcresulttype 1184 :funcretset false :funcvariadic false :funcformat 0 :funccollid 0 :inputcollid 0 :args <> :location 38}) :location 36}"#,
    r#"(at > now())"#,
);

fn one(policy: (&str, &str)) -> Option<Keyed> {
    keyed(&[Policy {
        permissive: true,
        tree: policy.0,
        expr: policy.1,
    }])
}

#[test]
fn a_recipient_policy_routes_on_its_column_by_one_caller_value() {
    let keyed = one(NOTIFICATIONS_RECIPIENT).unwrap();
    assert_eq!(keyed.attno, 3);
    assert_eq!(keyed.arms, [Arm::Scalar("public.current_user_id()".into())]);
    assert!(keyed.exact);
    assert!(keyed.reach.tables.is_empty());
    assert_eq!(keyed.reach.functions.len(), 1, "current_user_id, to vet");
}

#[test]
fn a_membership_subquery_routes_by_the_set_it_returns() {
    let keyed = one(DOCUMENTS_MEMBERS).unwrap();
    assert_eq!(keyed.attno, 2);
    assert_eq!(
        keyed.arms,
        [Arm::Set(
            "SELECT public.my_tenant_ids() AS my_tenant_ids".into()
        )]
    );
    assert!(keyed.exact);
}

#[test]
fn the_arms_of_an_or_on_one_column_are_all_kept_with_what_they_read() {
    let keyed = one(USERS_SELF_OR_COLLEAGUE).unwrap();
    assert_eq!(keyed.attno, 1);
    assert_eq!(keyed.arms.len(), 2);
    assert_eq!(
        keyed.arms[0],
        Arm::Scalar("public.current_user_id()".into())
    );
    let Arm::Set(query) = &keyed.arms[1] else {
        panic!("{:?}", keyed.arms[1])
    };
    assert!(query.starts_with("SELECT m.user_id") && query.ends_with("AS my_tenant_ids))"));
    assert_eq!(keyed.reach.tables.len(), 1, "memberships");
    assert!(keyed.exact);
}

#[test]
fn a_conjunct_routes_but_then_the_authorizer_still_decides() {
    let keyed = one(P_AND).unwrap();
    assert_eq!(keyed.attno, 2);
    assert_eq!(
        keyed.arms,
        [Arm::Scalar(
            "((current_setting('request.jwt.claims'::text, true))::jsonb ->> 'sub'::text)".into()
        )]
    );
    assert!(!keyed.exact);
}

#[test]
fn a_literal_holding_the_operator_and_a_column_on_the_right_still_split_right() {
    let keyed = one(P_LIT).unwrap();
    assert_eq!(keyed.arms, [Arm::Scalar("'it''s = here'::text".into())]);
}

#[test]
fn correlated_subqueries_time_and_other_operators_are_not_routed() {
    assert_eq!(one(P_CORR), None, "the subquery reads the row itself");
    assert_eq!(one(P_TIME), None, "a range over now()");
}

#[test]
fn restrictive_policies_keep_routing_but_not_exactness_and_columns_must_agree() {
    let both = keyed(&[
        Policy {
            permissive: true,
            tree: NOTIFICATIONS_RECIPIENT.0,
            expr: NOTIFICATIONS_RECIPIENT.1,
        },
        Policy {
            permissive: false,
            tree: P_TIME.0,
            expr: P_TIME.1,
        },
    ])
    .unwrap();
    assert!(!both.exact);
    let different_columns = keyed(&[
        Policy {
            permissive: true,
            tree: NOTIFICATIONS_RECIPIENT.0,
            expr: NOTIFICATIONS_RECIPIENT.1,
        },
        Policy {
            permissive: true,
            tree: DOCUMENTS_MEMBERS.0,
            expr: DOCUMENTS_MEMBERS.1,
        },
    ]);
    assert_eq!(different_columns, None);
    let none = keyed(&[]).unwrap();
    assert!(none.arms.is_empty() && none.exact, "no policy: nobody");
}

#[test]
fn text_splits_only_outside_parentheses_and_quotes() {
    assert_eq!(
        split_top("(a OR b) OR 'x OR y' OR \"c OR d\"", " OR ").unwrap(),
        ["(a OR b)", "'x OR y'", "\"c OR d\""]
    );
    assert_eq!(
        split_top("E'it\\'s OR' OR b", " OR ").unwrap(),
        ["E'it\\'s OR'", "b"]
    );
    assert_eq!(split_top("(a", " OR "), None);
    assert_eq!(unwrap_parens("((a) OR (b))"), "(a) OR (b)");
    assert_eq!(unwrap_parens("(a) OR (b)"), "(a) OR (b)");
}
