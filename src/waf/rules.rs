//! The WAF's rule table: every pattern rule with its id, family, paranoia level, severity and the
//! parts of a request it looks at, compiled into one [`RuleSet`] per paranoia level.
//!
//! Owns [`RULES`] (the table), [`Family`], [`Severity`], [`Part`] and [`RuleSet`]. The table is
//! static, so each level's set is compiled once per process ([`RuleSet::get`], on first use, which
//! config loading forces) and shared by every route and config generation; nothing is compiled
//! per request. A set holds one `regex::bytes::RegexSet` per [`Part`] kind, each made of the rules
//! at or below the level that look at that part, so one scan of a value answers every rule at once.
//!
//! Rule ids follow OWASP CRS's numbering by family (913 scanners, 920 protocol, 930 traversal and
//! local files, 932 remote command execution, 933 PHP, 934 template injection, 941 XSS, 942 SQL
//! injection, 944 Java); the two tokenising detectors (libinjection's SQLi and XSS, `detect.rs`)
//! are [`SQLI_LIBINJECTION`] and [`XSS_LIBINJECTION`]. Patterns are matched case-insensitively
//! against each decoded form of a value (`detect.rs`), so they are written in lower case.

use std::sync::OnceLock;

use regex::bytes::{RegexSet, RegexSetBuilder};

/// Attack families, as reported in metrics and the corpus benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Scanner,
    Protocol,
    Traversal,
    Rce,
    Php,
    Ssti,
    Xss,
    Sqli,
    Java,
    Nosql,
}

impl Family {
    pub const ALL: [Family; 10] = [
        Family::Scanner,
        Family::Protocol,
        Family::Traversal,
        Family::Rce,
        Family::Php,
        Family::Ssti,
        Family::Xss,
        Family::Sqli,
        Family::Java,
        Family::Nosql,
    ];

    /// The name used in config (`exclude_rules = ["sqli"]`), metrics and the log.
    pub fn name(self) -> &'static str {
        match self {
            Family::Scanner => "scanner",
            Family::Protocol => "protocol",
            Family::Traversal => "traversal",
            Family::Rce => "rce",
            Family::Php => "php",
            Family::Ssti => "ssti",
            Family::Xss => "xss",
            Family::Sqli => "sqli",
            Family::Java => "java",
            Family::Nosql => "nosql",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn by_name(name: &str) -> Option<Family> {
        Family::ALL.into_iter().find(|f| f.name() == name)
    }
}

/// What a match adds to the request's anomaly score (OWASP CRS's values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Critical,
    Error,
    Warning,
    Notice,
}

impl Severity {
    pub fn score(self) -> u32 {
        match self {
            Severity::Critical => 5,
            Severity::Error => 4,
            Severity::Warning => 3,
            Severity::Notice => 2,
        }
    }
}

/// The part of a request a rule looks at (a bit set in [`Rule::parts`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// Argument names and values (query, body), cookies, the inspected headers.
    Args = 0,
    /// The request path, decoded.
    Path = 1,
    /// The raw request target as sent (before any decoding or normalisation).
    Raw = 2,
    /// The User-Agent header.
    Agent = 3,
}

const ARGS: u8 = 1 << Part::Args as u8;
const PATH: u8 = 1 << Part::Path as u8;
const RAW: u8 = 1 << Part::Raw as u8;
const AGENT: u8 = 1 << Part::Agent as u8;

/// One pattern rule.
#[derive(Debug)]
pub struct Rule {
    pub id: u32,
    pub family: Family,
    /// The lowest paranoia level that runs it (1-4).
    pub paranoia: u8,
    pub severity: Severity,
    /// Bit set of [`Part`]s.
    pub parts: u8,
    pub pattern: &'static str,
}

/// libinjection's SQL tokeniser and fingerprint list (`detect.rs`).
pub const SQLI_LIBINJECTION: u32 = 942100;
/// libinjection's HTML5 tokeniser for XSS (`detect.rs`).
pub const XSS_LIBINJECTION: u32 = 941100;

const fn r(id: u32, family: Family, paranoia: u8, parts: u8, pattern: &'static str) -> Rule {
    Rule {
        id,
        family,
        paranoia,
        severity: Severity::Critical,
        parts,
        pattern,
    }
}

use Family::*;

/// Every pattern rule. Patterns are matched case-insensitively; `\b` is ASCII.
pub static RULES: &[Rule] = &[
    // ---- scanners: tools that announce themselves in User-Agent
    r(
        913100,
        Scanner,
        1,
        AGENT,
        r#"(?:sqlmap|nikto|nmap|masscan|acunetix|nessus|openvas|wpscan|dirbuster|gobuster|\bdirb\b|wfuzz|\bffuf\b|nuclei|zgrab|\bw3af|arachni|skipfish|havij|netsparker|appscan|webinspect|qualys|jaeles|feroxbuster|\bzap/|owasp[ _-]?zap|\bhydra\b|\bmedusa\b|morfeus|zmeu|\bfimap|commix|xsstrike|whatweb|burp ?(?:suite|collaborator)|\bbbqsql|\bgrabber\b|paros|webshag|\bvega/|brutus|\bnsauditor|crowdstrike ?scan|struts-?pwn|sqlninja|jorgee|\bdotdotpwn|\bwebscarab|hakrawler|\binteractsh|\bxray\b|fuzz faster u fool|oastify\.com|burpcollaborator|\binteract\.sh|\bsf/\d|projectdiscovery|censysinspect|nimbostratus|blackwidow|n-stealth|jdatabasedriver|\bnetsparker|\bcgichk|\bpmafind|\bmuieblackcat|\bwebvulnscan|\bdomino hunter|\bbfac\b|\bpython-requests/[\d.]+ \(sqlmap|\bl9explore|\bl9tcpid|\bnetcraft ssl|\bexpanse|\bbackdoorbot|\bcrimescanner|\bwebfuzz|\bsuper happy fun)"#,
    ),
    // ---- protocol: bytes no legitimate argument carries
    r(920270, Protocol, 1, ARGS | PATH, r#"\x00"#),
    r(
        920272,
        Protocol,
        3,
        ARGS,
        r#"[\x01-\x08\x0b\x0c\x0e-\x1f\x7f]"#,
    ),
    // ---- path traversal and local files
    r(
        930100,
        Traversal,
        1,
        RAW,
        r#"(?:%(?:c0%a[ef]|e0%80%ae|c1%9c|c0%9v|25(?:2e|c0|e0))|(?:%2e|\.)(?:%2e|\.)(?:%2f|%5c)|(?:%2e%2e|\.%2e|%2e\.)(?:/|\\))"#,
    ),
    r(
        930105,
        Traversal,
        1,
        PATH | RAW,
        r#"(?:^|[\\/;]|\.\.)\.\.+[\\/;]|[\\/]\.\.+(?:[\\/]|$)|^\.\.$"#,
    ),
    r(
        930110,
        Traversal,
        1,
        ARGS,
        r#"(?:\.\.+[\\/;]+){2}|[\\/]\.\.+[\\/]+\.\.+|(?:^|[\\/])\.\.+[\\/]+(?:etc|proc|var|usr|root|home|windows|winnt|boot|system32|inetpub|\.\w)\b|\.\.[\\/]+\.\.$|\.\.;[\\/]"#,
    ),
    r(
        930120,
        Traversal,
        1,
        ARGS | PATH,
        r#"(?:/etc/(?:passwd|shadow|group|hosts|issue|motd|crontab|sudoers|master\.passwd|security/|ssh/|mysql/|nginx/|apache2?/|httpd/)|/proc/(?:self|\d+)/(?:environ|cmdline|maps|fd|status|mem|root|cwd)|/var/(?:log|mail|spool)/|/root/|\bboot\.ini\b|\bwin\.ini\b|\bsystem\.ini\b|system32[\\/]|[\\/]windows[\\/](?:win|system)|[\\/]\.ssh[\\/]|\bid_(?:rsa|dsa|ecdsa|ed25519)\b|\bauthorized_keys\b|\.htaccess\b|\.htpasswd\b|\bweb\.config\b|[\\/]\.git[\\/]|\.git[\\/](?:config|head|index)\b|[\\/]\.env\b|wp-config\.php|/\.aws/credentials|\.bash_history\b|\bweb-inf[\\/]|\bmeta-inf[\\/])"#,
    ),
    r(
        930130,
        Traversal,
        1,
        PATH,
        r#"/(?:\.git|\.svn|\.hg|\.env|\.htaccess|\.htpasswd|\.ds_store|\.aws|\.ssh|\.bash_history|\.npmrc|\.docker|wp-config\.php|web\.config|phpinfo\.php|server-status)(?:/|$)"#,
    ),
    r(
        930140,
        Traversal,
        1,
        ARGS,
        r#"^(?:file|php|phar|zip|expect|glob|jar|netdoc|gopher|dict|ldap|tftp)://|^\\\\[\w.-]+\\"#,
    ),
    // ---- remote command execution
    r(
        932100,
        Rce,
        1,
        ARGS,
        r#"(?:[;|&\n\r]|\$\(|\|\||&&)\s*(?:\{\s*)?(?:[\w./-]*/)?(?:cat|ls|id|pwd|dig|host|ping|rm|touch|echo|env|ps|kill|pkill|sleep|head|tail|more|less|find|grep|awk|sed|ftp|scp|ssh|su|net|type|dir|timeout|xargs|sort|uniq|od|strings|reboot|shutdown|cp|mv|mkdir|rmdir|tar|unzip|gzip|java|node|lua|sh|dash|cmd)\b(?:\s*$|\s*[;|&`)#<>]|\s+[-/.$~'"\\*]|\s+\w+\s*[|;&<>]|\s+\d+\s*$|\s+[a-z]:\\|\$\{?ifs)"#,
    ),
    r(
        932105,
        Rce,
        1,
        ARGS,
        r#"(?:[;|&\n\r`]|\$\(|\|\||&&)\s*(?:\{\s*)?(?:[\w./-]*/)?(?:whoami|uname|wget|curl|ncat|netcat|nc|bash|zsh|ksh|csh|python[23]?|perl|ruby|php|nslookup|telnet|chmod|chown|printenv|ifconfig|ipconfig|base64|xxd|tftp|socat|busybox|crontab|useradd|passwd|sudo|systeminfo|tasklist|powershell|pwsh|certutil|bitsadmin|mkfifo|nohup|setsid|hostname|getent|killall|gcc|wmic|net1|regsvr32|rundll32|mshta|cscript|wscript)(?:\.exe)?\b(?:\s|$|[;|&`)<>])"#,
    ),
    r(
        932130,
        Rce,
        1,
        ARGS,
        r#"(?:^|[;|&\s])/?[\w?*]*[?*][\w?*]*/[\w?*]*[?*][\w?*]*(?:/|\s|$)|\b(?:get-childitem|get-content|start-process|set-content|out-file|get-process|remove-item|get-wmiobject|invoke-webrequest|invoke-restmethod|new-object)\b"#,
    ),
    r(
        932110,
        Rce,
        1,
        ARGS,
        r#"(?:/(?:usr/)?(?:local/)?s?bin/(?:ba|da|z|k|c|tc|fi)?sh\b|/(?:usr/)?bin/(?:env|perl|python\d?|ruby|php|nc|wget|curl)\b|/dev/(?:tcp|udp)/|\$\{?ifs\}?|\$\(\s*(?:echo|printf|cat|id|whoami|curl|wget|sleep|uname|nslookup|dig|host|ping|ls|bash|sh|base64|hostname|env|nc)\b|`\s*(?:id|whoami|uname|sleep \d+|cat /|curl |wget |nslookup |ping )[^`]*`)"#,
    ),
    r(
        932120,
        Rce,
        1,
        ARGS,
        r#"(?:\bcmd(?:\.exe)?\s*/[ck]\s|\bpowershell(?:\.exe)?\s+-(?:e|enc|encodedcommand|c|command|nop|noprofile|w|windowstyle|exec|executionpolicy)\b|\bnet(?:1)?\s+(?:user|localgroup|group|share|view|use)\b|\bcertutil(?:\.exe)?\s+-(?:urlcache|decode|encode)|\bbitsadmin(?:\.exe)?\s+/|\bwmic(?:\.exe)?\s+\w|\breg(?:\.exe)?\s+(?:add|query|delete|save)\s+hk|\brundll32(?:\.exe)?\s|\bmshta(?:\.exe)?\s|\bregsvr32(?:\.exe)?\s+/|\binvoke-(?:expression|webrequest|mimikatz)\b|\biex\s*\(|\bnew-object\s+(?:system\.)?net\.webclient|\bdownloadstring\s*\()"#,
    ),
    r(
        932170,
        Rce,
        1,
        ARGS | AGENT,
        r#"\(\s*\)\s*\{[^}]*;\s*\}\s*;"#,
    ),
    r(
        932200,
        Rce,
        2,
        ARGS,
        r#"`[^`]{0,40}\b(?:cat|ls|id|uname|curl|wget|nc|bash|sh|ping|whoami)\b[^`]{0,80}`|\$\((?:[^)]{0,80})\)"#,
    ),
    // ---- PHP
    r(933100, Php, 1, ARGS, r#"<\?(?:php\b|=)|\?>\s*$"#),
    r(
        933110,
        Php,
        1,
        ARGS,
        r#"\b(?:php|phar|zip|data|expect|glob|zlib|compress\.zlib|compress\.bzip2|ogg|rar|ssh2\.[a-z]+)://"#,
    ),
    r(
        933150,
        Php,
        1,
        ARGS,
        r#"\b(?:system|exec|shell_exec|passthru|popen|proc_open|pcntl_exec|assert|eval|create_function|call_user_func(?:_array)?|preg_replace|base64_decode|str_rot13|gzinflate|gzuncompress|file_get_contents|file_put_contents|fopen|fwrite|readfile|show_source|highlight_file|include(?:_once)?|require(?:_once)?|unserialize|phpinfo|posix_[a-z]+|move_uploaded_file|array_map|usort|ini_set|putenv|mail)\s*\("#,
    ),
    r(
        933160,
        Php,
        1,
        ARGS,
        r#"\$_(?:get|post|request|cookie|server|files|env)\s*\[[^\]]*\]\s*\(|\bchr\s*\(\s*\d+\s*\)\s*\.\s*chr\s*\(|\$\w+\s*\(\s*['"][^'"]{1,40}['"]\s*\)\s*;|\)\s*\(\s*['"](?:id|whoami|ls|cat|uname)\b"#,
    ),
    r(
        933170,
        Php,
        1,
        ARGS,
        r#"[oc]:\d+:"[^"]+":\d+:\{|\ba:\d+:\{[si]:\d+"#,
    ),
    r(
        933200,
        Php,
        2,
        ARGS,
        r#"\$_(?:get|post|request|cookie|server|files|env|session)\b|\$globals\b"#,
    ),
    // ---- server-side template injection
    r(
        934100,
        Ssti,
        1,
        ARGS,
        r#"\{\{.{0,200}?(?:__class__|__mro__|__subclasses__|__globals__|__builtins__|__init__|__import__|\.mro\(\)|config\.items|self\._|request\.application|lipsum|cycler|joiner|namespace\.__|popen|os\.system).{0,200}?\}\}|\{%.{0,80}?(?:import|include|exec|popen|system|__class__).{0,80}?%\}"#,
    ),
    r(
        934110,
        Ssti,
        1,
        ARGS,
        r#"\$\{\s*\d+\s*[*+/-]\s*\d+\s*\}|#\{\s*\d+\s*[*+/-]\s*\d+\s*\}|<%=?\s*(?:\d+\s*[*+]\s*\d+|system|exec|`|runtime|request|process)|\{\{\s*\d+\s*\*\s*['\d]+\s*\}\}|\{\{\s*(?:constructor|this)\.constructor|\bfreemarker\.template\.utility\.execute|\{php\}|\{\s*system\s*\(|\$\{\s*(?:t|new)\s*\("#,
    ),
    r(
        934120,
        Ssti,
        1,
        ARGS,
        r#"\{\{\s*(?:config|self|_self|settings|app|url_for|get_flashed_messages|range\.constructor)\b[^}]{0,200}\}\}|\|\s*(?:filter|map|reduce|sort)\s*\(\s*['"](?:system|exec|passthru|shell_exec|popen)|\$\{\{|\bsystem\.diagnostics\.process\b|\bprocess\.start\s*\(|@\{\s*[\w.]+\s*\(|\{\{\s*['"\[].{0,80}\|\s*(?:attr|filter)\b"#,
    ),
    r(
        934130,
        Ssti,
        1,
        ARGS,
        r#"(?:__proto__|constructor\s*(?:\.|\[\s*['\x22])\s*prototype)\b"#,
    ),
    // ---- XSS (besides libinjection's tokeniser)
    r(
        941110,
        Xss,
        1,
        ARGS | PATH,
        r#"<\s*/?\s*script\b|<\s*/?\s*(?:iframe|frame|frameset|object|embed|applet|meta|base|isindex|svg|math|xss|xml)\b"#,
    ),
    r(
        941120,
        Xss,
        1,
        ARGS | PATH,
        r#"(?:^|[\s"'`;/0-9=\x0b\x09\x0c,(])on(?:abort|activate|after\w+|animation\w+|auxclick|before\w+|begin|blur|bounce|canplay\w*|change|click|close|contextmenu|copy|cut|dblclick|drag\w*|drop|durationchange|end|ended|error|focus\w*|formdata|hashchange|input|invalid|key\w+|load\w*|message|mouse\w+|move\w*|offline|online|page\w+|paste|pause|play\w*|pointer\w+|popstate|progress|ratechange|readystatechange|repeat|reset|resize|scroll\w*|search|seek\w+|select\w*|show|stalled|start|storage|submit|suspend|timeupdate|toggle|touch\w+|transition\w+|unload|volumechange|waiting|wheel|zoom)\s*=[^=]"#,
    ),
    r(
        941170,
        Xss,
        1,
        ARGS | PATH,
        r#"(?:java|vb|live|j\s*a\s*v\s*a\s*)s\s*c\s*r\s*i\s*p\s*t\s*:|\bdata\s*:\s*(?:text/html|image/svg\+xml|application/(?:x-)?javascript)|\bdata:[^,]{0,40};base64,[a-z0-9+/]*(?:phnjcmlwd|pgltzy|pgh0bwwg|phn2zy)"#,
    ),
    r(
        941180,
        Xss,
        1,
        ARGS,
        r#"\b(?:document\s*\.\s*(?:cookie|write|domain|location|body\.innerhtml)|window\s*\.\s*(?:location|open|name)|\.innerhtml\s*=|\.outerhtml\s*=|string\s*\.\s*fromcharcode|\b(?:alert|prompt|confirm)\s*(?:\(|`|&#40;)|\beval\s*\(|\bsettimeout\s*\(\s*['\x22`]|\bsetinterval\s*\(\s*['\x22`]|\bnew\s+function\s*\(|\bimport\s*\(\s*['\x22`]|\batob\s*\(|\btop\s*\[\s*['\x22`])"#,
    ),
    r(
        941190,
        Xss,
        1,
        ARGS,
        r#"<[a-z][^>]{0,200}?\b(?:style\s*=[^>]*(?:expression\s*\(|url\s*\(\s*['"]?\s*javascript)|(?:src|href|action|formaction|data|srcdoc|background|lowsrc|dynsrc|poster|xlink:href)\s*=\s*['"]?\s*(?:javascript|vbscript|data):)|\bsrcdoc\s*=|\bformaction\s*=|@import\s+['"]?\s*(?:javascript|http)"#,
    ),
    r(
        941200,
        Xss,
        2,
        ARGS,
        r#"<\s*(?:img|image|video|audio|source|body|input|form|button|details|marquee|style|link|textarea|select|keygen|a|div|span|table|td|object)\b[^>]*?(?:\bon\w+\s*=|\bsrc\s*=|\bhref\s*=|\bstyle\s*=)"#,
    ),
    r(
        941210,
        Xss,
        2,
        ARGS,
        r#"expression\s*\(|-moz-binding|behavior\s*:\s*url"#,
    ),
    // ---- SQL injection (besides libinjection's tokeniser)
    r(
        942190,
        Sqli,
        1,
        ARGS,
        r#"\bunion(?:\s|/\*.*?\*/|\+|\(|%0[ab])+(?:all(?:\s|/\*.*?\*/|\()+|distinct(?:\s|/\*.*?\*/|\()+)?\(*\s*select\b"#,
    ),
    r(
        942160,
        Sqli,
        1,
        ARGS,
        r#"\b(?:sleep|pg_sleep)\s*\(\s*[\d.]+\s*\)|\bbenchmark\s*\(\s*\d+\s*,|\bwaitfor\s+(?:delay|time)\s+['\x22]|\bdbms_(?:lock\.sleep|pipe\.receive_message)\s*\(|\brandomblob\s*\(\s*\d{6,}"#,
    ),
    r(
        942140,
        Sqli,
        1,
        ARGS,
        r#"\b(?:information_schema|mysql\.(?:user|db|innodb_table_stats)|pg_(?:catalog|shadow|user|database|tables)|sysobjects|syscolumns|sys\.(?:tables|columns|objects|databases|sql_logins)|sqlite_(?:master|schema|version)|all_tables|user_tables|all_tab_columns|xp_cmdshell|xp_regread|xp_dirtree|sp_executesql|sp_oacreate|sp_password|msysaccessobjects|msysobjects|v\$version)\b"#,
    ),
    r(
        942150,
        Sqli,
        1,
        ARGS,
        r#"\b(?:load_file\s*\(|into\s+(?:out|dump)file\b|extractvalue\s*\(|updatexml\s*\(|utl_(?:inaddr|http)\.|dbms_(?:xmlgen|java|pipe)\.|@@(?:version|datadir|hostname|basedir|servername)\b|(?:group_concat|concat_ws)\s*\(|(?:ascii|ord|hex|unhex|mid|substr(?:ing)?)\s*\(\s*(?:\(\s*)?select\b|\bcast\s*\(.{0,60}?\bas\s+(?:int|char|varchar|numeric|signed)\b.{0,20}?\)\s*(?:--|#|=|>|<)|\bconvert\s*\(\s*int\s*,|\bchar\s*\(\s*\d+\s*(?:,\s*\d+\s*){2,}\)|\bctxsys\.|\bsys_context\s*\(|\bpg_read_file\s*\(|\blo_import\s*\(|\bcopy\s+\w+\s+(?:from|to)\s+program\b)"#,
    ),
    r(
        942130,
        Sqli,
        1,
        ARGS,
        r#"['"`)]\s*(?:or|and|xor|\|\||&&|div)\s*[(\s]*['"`]?\s*[\w.@$]+\s*['"`]?\s*(?:=|<|>|!=|<>|<=>|\blike\b|\bis\b|\brlike\b|\bregexp\b|\bbetween\b|\bin\s*\()"#,
    ),
    r(
        942180,
        Sqli,
        1,
        ARGS,
        r#"['"`]\s*(?:;|\))?\s*(?:--|#|/\*|;\s*--|;\s*%00)\s*$|['"`]\s*\)\s*(?:or|and)\b|\border\s+by\s+\d+\s*(?:--|#|/\*|$)|\bgroup\s+by\s+.{1,40}?\bhaving\b|\bhaving\s+\d+\s*[=<>]\s*\d+"#,
    ),
    r(
        942195,
        Sqli,
        1,
        ARGS,
        r#"['"]\s*(?:\|\||\+|&|\bor\b|\band\b)\s*\(+\s*select\b|\(\s*select\b.{1,100}?\bfrom\b.{1,100}?\)|\bcase\s+when\s*\(.{1,60}?\bthen\b"#,
    ),
    r(
        942200,
        Sqli,
        1,
        ARGS,
        r#";\s*(?:drop|alter|create|truncate|rename)\s+(?:table|database|schema|user|procedure|function|view|index)\b|;\s*(?:exec|execute)\s+(?:master\.|xp_|sp_|\(|@)|;\s*shutdown\b|;\s*(?:insert\s+into|delete\s+from|update\s+\w+\s+set|select\s+.{1,80}?\bfrom|declare\s+@|grant\s+\w+|revoke\s+\w+)\b"#,
    ),
    r(
        942210,
        Sqli,
        1,
        ARGS,
        r#"/\*!\d*\s*(?:union|select|and|or|\d)|\b(?:or|and)\s+(?:\d+|'[^']*'|"[^"]*")\s*(?:=|<>|!=|>|<)\s*(?:\d+|'[^']*'|"[^"]*")\s*(?:--|#|/\*|;|$)|['"]\s*(?:or|and)\s+(?:not\s+)?(?:true|false|null|\d+)\b|\bselect\s+(?:\*|@@|\w+\s*\(|\w+(?:\s*,\s*\w+)*)\s+from\s+[\w.$\x22\x60\[\]]+\s*(?:where|--|#|;|$|\)|limit|order|union)"#,
    ),
    r(
        942220,
        Sqli,
        2,
        ARGS,
        r#"\b(?:and|or|xor)\s+\d+\s*(?:=|<>|!=|>|<)\s*\d+|\b(?:select|union|insert|update|delete|drop)\b.{1,60}?\b(?:from|into|table|where|set)\b|\b(?:if|ifnull|nullif|case\s+when)\s*\(.{0,40}?select\b"#,
    ),
    r(
        942230,
        Sqli,
        3,
        ARGS,
        r#"['"`]\s*(?:--|#|;|\|\||\+)|\b(?:select|union|where|having|exec|sleep)\b"#,
    ),
    // ---- Java: log4shell lookups, runtime, expression languages, serialized objects
    r(
        944100,
        Java,
        1,
        ARGS | PATH | AGENT,
        r#"\$\{\s*(?:jndi|ctx|env|sys|java|main|bundle|k8s|docker|log4j|spring|web|lower|upper|date|base64|::-)\b|\$\{[^}]{0,40}\$\{|\$\{\s*(?:\$\{[^}]*\}|[a-z]|:)+\s*:\s*(?:ldap|rmi|dns|iiop|nis|nds|corba|http)s?\s*:"#,
    ),
    r(
        944110,
        Java,
        1,
        ARGS,
        r#"java\.lang\.(?:runtime|processbuilder|system|class|reflect|thread)|\bgetruntime\s*\(\s*\)|\.exec\s*\(\s*['\x22]|\bnew\s+processbuilder\b|\bclass\.module\.classloader\b|\bclassloader\.(?:resources|urls)\b|\bjavax\.script\.scriptenginemanager|\bjava\.beans\.xmldecoder|\bgroovy\.lang\.|\bnashorn|\bjdk\.jshell|["']@type["']\s*:\s*["'](?:com\.|org\.|java\.|javax\.|ch\.|sun\.)|\bjdbcrowsetimpl\b|\btemplatesimpl\b|\bcom\.sun\.org\.apache\.xalan|\borg\.apache\.commons\.collections\.functors|\bcom\.mchange\.v2\.c3p0|\bldap://[\w.-]+(?::\d+)?/\w|\brmi://[\w.-]+(?::\d+)?/\w"#,
    ),
    r(
        944120,
        Java,
        1,
        ARGS,
        r#"%\{\s*\(?\s*#|#\{\s*['\x22]?\s*\w+\.(?:getclass|forname|class)|\bt\s*\(\s*java\.|@java\.lang|#_memberaccess|#context\[|ognlcontext|#application\[|\bstruts\.valuestack"#,
    ),
    r(
        944130,
        Java,
        1,
        ARGS,
        r#"\bro0ab|\baced0005|\bh4sib(?:[a-z0-9+/]{4}){6}"#,
    ),
    // ---- NoSQL operator injection (`user[$ne]=`, `{"$where": ...}`)
    r(
        934160,
        Nosql,
        1,
        ARGS,
        r#"(?:^|\[|\.)\$(?:ne|gt|gte|lt|lte|nin|in|regex|where|expr|function|accumulator|exists|or|and|not|nor|elemmatch|jsonschema)(?:\]|$)|\bdb\.(?:\w+\.)?(?:find|insert|drop|remove|update)\w*\s*\(|\bthis\.\w+\s*(?:==|!=)|\bsleep\s*\(\s*\d+\s*\)\s*(?:\|\||&&)|["']\$(?:ne|gt|gte|lt|lte|nin|in|regex|where|expr|exists|or|and|not|nor)["']\s*:|['"]\s*;\s*return\s+(?:true|false|\d|this|[a-z]+\s*\()|['"]\s*\|\|\s*['"]?\w+['"]?\s*==\s*['"]?\w+"#,
    ),
];

/// The rules of one paranoia level, compiled.
pub struct RuleSet {
    /// Per [`Part`]: the regex set and, for each of its patterns, the index into [`RULES`].
    parts: [(RegexSet, Vec<usize>); 4],
    pub libinjection_sqli: bool,
    pub libinjection_xss: bool,
}

impl RuleSet {
    /// The compiled set for paranoia `level` (1-4), compiled on first use.
    pub fn get(level: u8) -> &'static RuleSet {
        static SETS: [OnceLock<RuleSet>; 4] = [
            OnceLock::new(),
            OnceLock::new(),
            OnceLock::new(),
            OnceLock::new(),
        ];
        let level = level.clamp(1, 4);
        SETS[level as usize - 1].get_or_init(|| RuleSet::compile(level))
    }

    fn compile(level: u8) -> RuleSet {
        let part = |p: Part| {
            let picked: Vec<usize> = (0..RULES.len())
                .filter(|&i| RULES[i].paranoia <= level && RULES[i].parts & (1 << p as u8) != 0)
                .collect();
            let set = RegexSetBuilder::new(picked.iter().map(|&i| RULES[i].pattern))
                .case_insensitive(true)
                .unicode(false)
                .dot_matches_new_line(true)
                .size_limit(64 << 20)
                .dfa_size_limit(16 << 20)
                .build()
                .expect("the WAF's built-in rules compile (tested)");
            (set, picked)
        };
        RuleSet {
            parts: [
                part(Part::Args),
                part(Part::Path),
                part(Part::Raw),
                part(Part::Agent),
            ],
            libinjection_sqli: true,
            libinjection_xss: true,
        }
    }

    /// Calls `hit(rule index)` for every rule of part `p` that matches `value`.
    pub fn scan(&self, p: Part, value: &[u8], hit: &mut dyn FnMut(usize)) {
        let (set, picked) = &self.parts[p as usize];
        if !set.is_match(value) {
            return;
        }
        for i in set.matches(value).iter() {
            hit(picked[i]);
        }
    }
}

/// The index into [`RULES`] of rule `id`, if it is a pattern rule.
pub fn index_of(id: u32) -> Option<usize> {
    RULES.iter().position(|r| r.id == id)
}

/// Whether `id` names a rule (a pattern rule or one of the tokenisers).
pub fn known(id: u32) -> bool {
    id == SQLI_LIBINJECTION || id == XSS_LIBINJECTION || index_of(id).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_level_compiles_and_ids_are_unique() {
        for level in 1..=4 {
            let _ = RuleSet::get(level);
        }
        let mut ids: Vec<u32> = RULES.iter().map(|r| r.id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), RULES.len());
        assert!(RULES.len() <= 64, "detect.rs keeps matched rules in a u64");
        assert!(!known(SQLI_LIBINJECTION + 1) || index_of(SQLI_LIBINJECTION + 1).is_some());
    }

    fn hits(level: u8, p: Part, v: &str) -> Vec<u32> {
        let mut out = Vec::new();
        RuleSet::get(level).scan(p, v.as_bytes(), &mut |i| out.push(RULES[i].id));
        out
    }

    #[test]
    fn patterns_hit_what_they_are_for() {
        assert_eq!(hits(1, Part::Agent, "sqlmap/1.7#stable"), [913100]);
        assert!(hits(1, Part::Args, "; cat /etc/passwd").contains(&932100));
        assert!(hits(1, Part::Args, "x | id").contains(&932100));
        assert!(hits(1, Part::Args, "a$(whoami)").contains(&932110));
        assert!(hits(1, Part::Args, "1 UNION/**/ALL SELECT 1").contains(&942190));
        assert!(hits(1, Part::Args, "${jndi:ldap://x/a}").contains(&944100));
        assert!(hits(1, Part::Path, "/a/../../etc/passwd").contains(&930105));
        assert!(hits(1, Part::Args, "../../etc/passwd").contains(&930110));
        assert!(
            hits(1, Part::Args, "../assets/logo.svg").is_empty(),
            "one step up is a relative link"
        );
        assert!(hits(1, Part::Raw, "/a/%2e%2e%2fetc").contains(&930100));
        assert!(hits(1, Part::Args, "<svg onload=alert(1)>").contains(&941110));
        // paranoia 2 rules stay out of level 1
        assert!(!hits(1, Part::Args, "1 and 1=1").contains(&942220));
        assert!(hits(2, Part::Args, "1 and 1=1").contains(&942220));
    }

    #[test]
    fn ordinary_text_passes() {
        for v in [
            "Jane O'Brien",
            "Please select the red one from the list",
            "salt & pepper; more info later",
            "Tom & Jerry",
            "a < b and c > d",
            "docs/guide/intro",
            "report-2024.pdf",
            "How do I use the ls command?",
            "I'd like to order 3 (three) items; thanks",
        ] {
            assert_eq!(hits(1, Part::Args, v), Vec::<u32>::new(), "{v}");
        }
    }
}
