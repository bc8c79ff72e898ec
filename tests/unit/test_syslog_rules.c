/* The rules engine: the shipped config/syslog-rules.conf on real-looking
 * lines (each with the alert it must make), conditions, templates,
 * "resolves" naming the same alert, and every load error with its line. */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "syslog_parse.h"

TestSuite(syslog_rules, .timeout = 10);

#define NOW_US 1795651200000000LL

/* Parses LINE, runs RULES, and prints the alert as one line, or "none". */
static const char *
run(const tds_rules *rules, const char *line)
{
    static char out[4096];
    static char scratch[8192];
    static tds_result res;
    tds_parse_opts o = {.now_us = NOW_US};
    tds_msg m;
    const char *reason;
    if (tds_parse(line, strlen(line), &o, &m, scratch, &reason) != 0) {
        snprintf(out, sizeof(out), "ERR %s", reason);
        return out;
    }
    if (!m.host.p) {
        m.host.p = "192.0.2.7";
        m.host.n = 9;
    }
    int r = tds_rules_match(rules, &m, "192.0.2.7", &res);
    if (r < 0)
        return "none";
    char *p = out;
    p += sprintf(p, "%s %s %s/%s/%s %s key=%s", tds_rules_name(rules, (size_t)r),
                 res.f.status, res.f.source, res.f.resource, res.f.check,
                 res.f.severity, res.f.dedup_key ? res.f.dedup_key : "-");
    for (size_t i = 0; i < res.f.n_labels; i++)
        p += sprintf(p, " %s=%s", res.f.label_names[i], res.f.label_values[i]);
    p += sprintf(p, " | %s", res.f.summary ? res.f.summary : "-");
    return out;
}

static tds_rules *
shipped(void)
{
    char err[512];
    tds_rules *r = tds_rules_load(TD_SOURCE_DIR "/config/syslog-rules.conf", err,
                                  sizeof(err));
    cr_assert_not_null(r, "%s", err);
    return r;
}

struct line_case {
    char line[200];
    char want[300];
};

static struct line_case shipped_cases[] = {
    {"<187>12: *Mar  1 18:46:11: %LINK-3-UPDOWN: Interface GigabitEthernet0/1, "
     "changed state to down",
     "link-down firing syslog/192.0.2.7/link_down major "
     "key=link/192.0.2.7/GigabitEthernet0/1 interface=GigabitEthernet0/1 | "
     "Interface GigabitEthernet0/1 on 192.0.2.7 is down"},
    {"<189>Nov 25 10:00:00 sw1 %LINK-3-UPDOWN: Interface GigabitEthernet0/1, "
     "changed state to up",
     "link-up resolved syslog/sw1/link_down info key=link/sw1/GigabitEthernet0/1 "
     "interface=GigabitEthernet0/1 | Interface GigabitEthernet0/1 on sw1 is up again"},
    {"<187>Nov 25 10:00:00 sw1 %LINK-3-UPDOWN: Interface Te1/0/1, changed state "
     "to administratively down",
     "link-down firing syslog/sw1/link_down major key=link/sw1/Te1/0/1 "
     "interface=Te1/0/1 | Interface Te1/0/1 on sw1 is down"},
    {"<189>Nov 25 10:00:01 sw1 %LINEPROTO-5-UPDOWN: Line protocol on Interface "
     "Gi0/2, changed state to down",
     "lineproto-down firing syslog/sw1/lineproto_down minor key=lineproto/sw1/Gi0/2 "
     "interface=Gi0/2 | Line protocol on Gi0/2 on sw1 is down"},
    {"<189>Nov 25 10:00:01 sw1 %LINEPROTO-5-UPDOWN: Line protocol on Interface "
     "Gi0/2, changed state to up",
     "lineproto-up resolved syslog/sw1/lineproto_down info key=lineproto/sw1/Gi0/2 "
     "interface=Gi0/2 | %LINEPROTO-5-UPDOWN: Line protocol on Interface Gi0/2, "
     "changed state to up"},
    {"<3>1 2026-11-25T10:00:00Z srv-1 kernel - - - e1000e: eth0 NIC Link is Down",
     "linux-link-down firing syslog/srv-1/link_down major key=link/srv-1/eth0 "
     "interface=eth0 | Interface eth0 on srv-1 is down"},
    {"<6>Nov 25 10:00:05 srv-1 kernel: eth0: Link is Up - 1Gbps/Full",
     "linux-link-up resolved syslog/srv-1/link_down info key=link/srv-1/eth0 "
     "interface=eth0 | eth0: Link is Up - 1Gbps/Full"},
    {"<189>Nov 25 10:00:00 rtr1 %BGP-5-ADJCHANGE: neighbor 10.0.0.2 Down BGP "
     "Notification sent",
     "bgp-down firing syslog/rtr1/bgp_neighbor_down critical key=bgp/rtr1//10.0.0.2 "
     "neighbor=10.0.0.2 vrf= | BGP neighbour 10.0.0.2 on rtr1 is down"},
    {"<189>Nov 25 10:05:00 rtr1 %BGP-5-ADJCHANGE: neighbor 10.0.0.2 Up",
     "bgp-up resolved syslog/rtr1/bgp_neighbor_down info key=bgp/rtr1//10.0.0.2 "
     "neighbor=10.0.0.2 vrf= | BGP neighbour 10.0.0.2 on rtr1 is up again"},
    {"<189>Nov 25 10:00:00 rtr2 %BGP-5-ADJCHANGE: neighbor 2001:db8::1 vpn vrf "
     "blue Down Interface flap",
     "bgp-down firing syslog/rtr2/bgp_neighbor_down critical "
     "key=bgp/rtr2/blue/2001:db8::1 neighbor=2001:db8::1 vrf=blue | BGP neighbour "
     "2001:db8::1 on rtr2 is down"},
    {"<29>Nov 25 10:00:00 frr bgpd[812]: %ADJCHANGE: neighbor 192.0.2.9(Unknown) "
     "in vrf default Down Peer closed the session",
     "bgp-down firing syslog/frr/bgp_neighbor_down critical "
     "key=bgp/frr/default/192.0.2.9 neighbor=192.0.2.9 vrf=default | BGP "
     "neighbour 192.0.2.9 on frr is down"},
    {"<2>Nov 25 10:00:00 bsd1 kernel: /var: write failed, filesystem is full",
     "filesystem-full firing syslog/bsd1/filesystem_full major key=fs/bsd1//var "
     "filesystem=/var | Filesystem /var on bsd1 is full"},
    {"<11>1 2026-11-25T10:00:00Z app-7 postgres 55 - - could not write to file "
     "\"pg_wal/x\": No space left on device",
     "no-space-left firing syslog/app-7/disk_full major key=nospace/app-7/postgres "
     "program=postgres | postgres on app-7: could not write to file \"pg_wal/x\": "
     "No space left on device"},
    {"<3>Nov 25 10:00:00 db-2 kernel: Out of memory: Killed process 4242 (java) "
     "total-vm:8000kB, anon-rss:7000kB",
     "oom-killer firing syslog/db-2/oom_kill major key=oom/db-2/java process=java "
     "| OOM killer killed java (pid 4242) on db-2"},
    {"<30>1 2026-11-25T10:00:00Z web-3 systemd 1 - - nginx.service: Failed with "
     "result 'exit-code'.",
     "systemd-unit-failed firing syslog/web-3/unit_failed major "
     "key=unit/web-3/nginx.service unit=nginx.service | nginx.service failed on "
     "web-3 (exit-code)"},
    {"<30>1 2026-11-25T10:01:00Z web-3 systemd 1 - - Started nginx.service - A "
     "high performance web server and a reverse proxy server.",
     "systemd-unit-started resolved syslog/web-3/unit_failed info "
     "key=unit/web-3/nginx.service unit=nginx.service | Started nginx.service - A "
     "high performance web server and a reverse proxy server."},
    {"<10>Nov 25 10:00:00 h1 raid: array degraded",
     "critical-messages firing syslog/h1/syslog_critical critical "
     "key=crit/h1/raid | array degraded"},
    {"<14>Nov 25 10:00:00 h1 cron[1]: job done", "none"},
    {"<13>1 - h app - - - link is down but no rule says so", "none"},
};

#define N_SHIPPED (sizeof(shipped_cases) / sizeof(shipped_cases[0]))
static int shipped_idx[N_SHIPPED];

ParameterizedTestParameters(syslog_rules, shipped_rules_make_the_documented_alerts)
{
    for (size_t i = 0; i < N_SHIPPED; i++)
        shipped_idx[i] = (int)i;
    return cr_make_param_array(int, shipped_idx, N_SHIPPED);
}

ParameterizedTest(int *i, syslog_rules, shipped_rules_make_the_documented_alerts)
{
    tds_rules *r = shipped();
    cr_assert_str_eq(run(r, shipped_cases[*i].line), shipped_cases[*i].want);
    tds_rules_free(r);
}

static tds_rules *
rules_of(const char *text)
{
    char err[512];
    tds_rules *r = tds_rules_parse(text, strlen(text), "t.conf", err, sizeof(err));
    cr_assert_not_null(r, "%s", err);
    return r;
}

Test(syslog_rules, first_matching_rule_wins_and_conditions_all_hold)
{
    tds_rules *r = rules_of("[a]\nfacility = local7, local6\nmin_severity = err\n"
                            "app = ^fw$\nmessage = deny\n"
                            "[b]\nmessage = deny\n");
    cr_assert_eq(strncmp(run(r, "<187>Nov 25 10:00:00 h fw: deny x"), "a ", 2), 0);
    /* local7.warning: below err, so not a */
    cr_assert_eq(strncmp(run(r, "<188>Nov 25 10:00:00 h fw: deny x"), "b ", 2), 0);
    /* local5 */
    cr_assert_eq(strncmp(run(r, "<171>Nov 25 10:00:00 h fw: deny x"), "b ", 2), 0);
    cr_assert_eq(strncmp(run(r, "<187>Nov 25 10:00:00 h gw: deny x"), "b ", 2), 0);
    cr_assert_str_eq(run(r, "<187>Nov 25 10:00:00 h fw: allow"), "none");
    tds_rules_free(r);
}

Test(syslog_rules, defaults_and_severity_mapping)
{
    tds_rules *r = rules_of("[anything]\n");
    cr_assert_str_eq(run(r, "<0>1 - h a - - - boom"),
                     "anything firing syslog/h/anything critical key=- | boom");
    cr_assert_str_eq(run(r, "<3>1 - h a - - - x"),
                     "anything firing syslog/h/anything major key=- | x");
    cr_assert_str_eq(run(r, "<4>1 - h a - - - x"),
                     "anything firing syslog/h/anything warning key=- | x");
    cr_assert_str_eq(run(r, "<5>1 - h a - - - x"),
                     "anything firing syslog/h/anything info key=- | x");
    tds_rules_free(r);
}

Test(syslog_rules, structured_data_conditions_and_templates)
{
    tds_rules *r = rules_of(
        "[sd]\nsd origin@1 ip = ^(?<net>10)\\.\nmsgid = ^LOGIN$\n"
        "resource = ${sd origin@1 ip}\ncheck = login-${net}\nsummary = ${app}"
        " ${procid} ${msgid} ${facility}.${severity} ${fromhost} $$5\n"
        "label.software = ${sd origin@1 software}\nseverity = minor\n");
    cr_assert_str_eq(run(r, "<38>1 - h sshd 7 LOGIN [origin@1 ip=\"10.1.2.3\" "
                            "software=\"open\\\"ssh\"] hi"),
                     "sd firing syslog/10.1.2.3/login-10 minor key=- software=open\"ssh "
                     "| sshd 7 LOGIN auth.info 192.0.2.7 $5");
    cr_assert_str_eq(run(r, "<38>1 - h sshd 7 LOGIN [origin@1 ip=\"192.0.2.1\"] hi"), "none");
    cr_assert_str_eq(run(r, "<38>1 - h sshd 7 LOGIN - no sd"), "none");
    tds_rules_free(r);
}

Test(syslog_rules, numbered_groups_and_an_unset_optional_group)
{
    tds_rules *r = rules_of("[n]\nmessage = (a)(b)?(c)\ncheck = ${0}:${1}:${2}:${3}\n");
    cr_assert_str_eq(run(r, "<13>1 - h x - - - xac"),
                     "n firing syslog/h/ac:a::c info key=- | xac");
    tds_rules_free(r);
}

Test(syslog_rules, a_resolve_rule_names_the_alert_of_the_rule_it_resolves)
{
    tds_rules *r = rules_of(
        "[down]\nmessage = port (?<p>\\d+) down\nresource = sw-${p}\ncheck = port\n"
        "dedup_key = k/${host}/${p}\nlabel.port = ${p}\nseverity = major\n"
        "[up]\nmessage = port (?<p>\\d+) up\nresolves = down\nlabel.extra = y\n");
    cr_assert_str_eq(run(r, "<13>1 - h x - - - port 7 down"),
                     "down firing syslog/sw-7/port major key=k/h/7 port=7 | port 7 down");
    cr_assert_str_eq(run(r, "<13>1 - h x - - - port 7 up"),
                     "up resolved syslog/sw-7/port info key=k/h/7 port=7 extra=y | port 7 up");
    tds_rules_free(r);
}

struct err_case {
    char text[300];
    char err[300];
};

static struct err_case err_cases[] = {
    {"x = 1\n", "t.conf:1: a key before the first [RULE-NAME]"},
    {"[a]\n# c\nmesage = x\n", "t.conf:3: rule a: unknown key 'mesage'"},
    {"[a b]\n", "t.conf:1: rule name 'a b': letters, digits, '_', '-' and '.' only, at most 64"},
    {"[a]\n[a]\n", "t.conf:2: rule a defined twice (first at line 1)"},
    {"[a\n", "t.conf:1: a section header is [NAME]"},
    {"[a]\njust words\n", "t.conf:2: expected KEY = VALUE or [RULE-NAME]"},
    {"[a]\nmessage = (unclosed\n",
     "t.conf:2: rule a: bad regular expression at offset 9: missing closing parenthesis"},
    {"[a]\nmessage = x\nmessage = y\n", "t.conf:3: rule a: condition given twice"},
    {"[a]\nfacility = local9\n", "t.conf:2: rule a: unknown facility 'local9'"},
    {"[a]\nmin_severity = loud\n",
     "t.conf:2: rule a: unknown syslog severity 'loud' (emerg alert crit err warning "
     "notice info debug)"},
    {"[a]\nstatus = maybe\n", "t.conf:2: rule a: status is firing or resolved, not 'maybe'"},
    {"[a]\nseverity = urgent\n",
     "t.conf:2: rule a: severity is one of critical major minor warning info, not 'urgent'"},
    {"[a]\ncheck = ${nope}\n",
     "t.conf:2: rule a: check uses ${nope}, which is neither a built-in value nor a "
     "named group of this rule's regexes"},
    {"[a]\ncheck = ${1}\n", "t.conf:2: rule a: check: ${1} needs a message regex"},
    {"[a]\nmessage = (x)\ncheck = ${2}\n",
     "t.conf:3: rule a: check: ${2}, but the message regex has 1 groups"},
    {"[a]\ncheck = $x\n",
     "t.conf:2: rule a: check: '$' starts ${NAME} (write $$ for a dollar sign)"},
    {"[a]\ncheck = ${host\n", "t.conf:2: rule a: check: unterminated ${"},
    {"[a]\nmessage = (?<host>x)\n",
     "t.conf:1: rule a: a regex names a group 'host', which is also a built-in "
     "value; rename the group"},
    {"[a]\nresolves = b\n", "t.conf:2: rule a: resolves 'b', which is not a rule in this file"},
    {"[a]\nstatus = resolved\n[b]\nresolves = a\n",
     "t.conf:4: rule b: resolves 'a', which is not a firing rule"},
    {"[a]\n[b]\nstatus = firing\nresolves = a\n",
     "t.conf:4: rule b: resolves another rule, so its status cannot be firing"},
    {"[a]\nmessage = (?<p>x)\ndedup_key = ${p}\n[b]\nmessage = y\nresolves = a\n",
     "t.conf:3: rule b: dedup_key uses ${p}, which is neither a built-in value nor a "
     "named group of this rule's regexes (the template comes from rule a"},
    {"[a]\nsd x = y\n", "t.conf:2: rule a: write a structured-data condition as 'sd "
     "SD-ID PARAM = REGEX'"},
    {"[a]\nresource =\n", "t.conf:2: rule a: resource has no value"},
    /* found by fuzz_rules: a Latin-1 byte in a regex crashed pcre2_compile
     * (it was told the pattern was valid UTF-8) */
    {"[a]\nmessage = ke\xedrnel\n", "t.conf:2: not valid UTF-8 (save the file as UTF-8)"},
    {"[a]\ncheck = \xc3\n", "t.conf:2: not valid UTF-8 (save the file as UTF-8)"},
};

#define N_ERR (sizeof(err_cases) / sizeof(err_cases[0]))
static int err_idx[N_ERR];

ParameterizedTestParameters(syslog_rules, each_mistake_is_an_error_with_its_line)
{
    for (size_t i = 0; i < N_ERR; i++)
        err_idx[i] = (int)i;
    return cr_make_param_array(int, err_idx, N_ERR);
}

ParameterizedTest(int *i, syslog_rules, each_mistake_is_an_error_with_its_line)
{
    const struct err_case *c = &err_cases[*i];
    char err[512] = "";
    tds_rules *r = tds_rules_parse(c->text, strlen(c->text), "t.conf", err, sizeof(err));
    cr_assert_null(r);
    cr_assert_str_eq(err, c->err);
}

Test(syslog_rules, a_missing_file_names_the_file)
{
    char err[512];
    cr_assert_null(tds_rules_load("/nonexistent/rules.conf", err, sizeof(err)));
    cr_assert_str_eq(err, "/nonexistent/rules.conf: No such file or directory");
}

Test(syslog_rules, matching_reuses_the_result_buffer)
{
    tds_rules *r = rules_of("[a]\nmessage = (?<w>\\w+)\nsummary = ${w}${w}${w}${w}\n");
    char line[300];
    memset(line, 0, sizeof(line));
    strcpy(line, "<13>1 - h x - - - ");
    memset(line + strlen(line), 'z', 200);
    for (int k = 0; k < 1000; k++)
        cr_assert_neq(strcmp(run(r, line), "none"), 0);
    tds_rules_free(r);
}
