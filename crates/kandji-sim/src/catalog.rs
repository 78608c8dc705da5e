//! Static reference data the generator draws from.

/// Device platform as `/devices` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Platform {
    Mac,
    IPhone,
    IPad,
    AppleTv,
    /// Iru manages Android (spec: `/devices/{id}`, `/details` and `/apps` examples).
    Android,
    /// And Windows (spec: the `platform` filter's values; no example shapes).
    Windows,
}

impl Platform {
    pub const ALL: [Platform; 4] = [
        Platform::Mac,
        Platform::IPhone,
        Platform::IPad,
        Platform::AppleTv,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Platform::Mac => "Mac",
            Platform::IPhone => "iPhone",
            Platform::IPad => "iPad",
            Platform::AppleTv => "AppleTV",
            Platform::Android => "Android",
            Platform::Windows => "Windows",
        }
    }
    /// Apple's families: the ones Prism, ADE, library items and the security feeds know.
    pub fn is_apple(self) -> bool {
        !matches!(self, Platform::Android | Platform::Windows)
    }
    /// Prism `device__family`.
    pub fn family(self) -> &'static str {
        match self {
            Platform::AppleTv => "tvOS",
            p => p.name(),
        }
    }
    /// ADE `device_family` / `os`.
    pub fn ade_os(self) -> &'static str {
        match self {
            Platform::Mac => "OSX",
            Platform::IPhone => "iOS",
            Platform::IPad => "iPadOS",
            Platform::AppleTv => "tvOS",
            Platform::Android => "Android",
            Platform::Windows => "Windows",
        }
    }
    pub fn parse(s: &str) -> Option<Platform> {
        match s {
            "Mac" => Some(Platform::Mac),
            "iPhone" => Some(Platform::IPhone),
            "iPad" => Some(Platform::IPad),
            "AppleTV" | "tvOS" => Some(Platform::AppleTv),
            "Android" => Some(Platform::Android),
            "Windows" => Some(Platform::Windows),
            _ => None,
        }
    }
    pub fn models(self) -> &'static [Model] {
        match self {
            Platform::Mac => MAC_MODELS,
            Platform::IPhone => IPHONE_MODELS,
            Platform::IPad => IPAD_MODELS,
            Platform::AppleTv => TV_MODELS,
            Platform::Android => ANDROID_MODELS,
            Platform::Windows => WINDOWS_MODELS,
        }
    }
    pub fn os_versions(self) -> &'static [OsVersion] {
        match self {
            Platform::Mac => MAC_OS,
            Platform::IPhone | Platform::IPad => IOS_OS,
            Platform::AppleTv => TV_OS,
            Platform::Android => ANDROID_OS,
            Platform::Windows => WINDOWS_OS,
        }
    }
}

pub struct Model {
    pub name: &'static str,
    pub model_id: &'static str,
    pub short: &'static str,
    pub processor: &'static str,
    pub cores: u8,
    pub memory: &'static str,
    pub capacity_gb: f64,
    pub apple_silicon: bool,
    pub ade_desc: &'static str,
}

macro_rules! m {
    ($n:expr, $id:expr, $s:expr, $p:expr, $c:expr, $mem:expr, $cap:expr, $as:expr, $d:expr) => {
        Model {
            name: $n,
            model_id: $id,
            short: $s,
            processor: $p,
            cores: $c,
            memory: $mem,
            capacity_gb: $cap,
            apple_silicon: $as,
            ade_desc: $d,
        }
    };
}

pub static MAC_MODELS: &[Model] = &[
    m!(
        "MacBook Air (M1, 2020)",
        "MacBookAir10,1",
        "MacBook Air",
        "Apple M1",
        8,
        "8 GB",
        228.27,
        true,
        "MBA 13.3 SLV/8C CPU/7C GPU/8GB/256GB-USA"
    ),
    m!(
        "MacBook Air (13-inch, M2, 2022)",
        "Mac14,2",
        "MacBook Air",
        "Apple M2",
        8,
        "16 GB",
        494.38,
        true,
        "MBA 13.6 MDN/8C CPU/8C GPU/16GB/512GB-USA"
    ),
    m!(
        "MacBook Air (15-inch, M3, 2024)",
        "Mac15,13",
        "MacBook Air",
        "Apple M3",
        8,
        "16 GB",
        494.38,
        true,
        "MBA 15.3 STL/8C CPU/10C GPU/16GB/512GB-USA"
    ),
    m!(
        "MacBook Pro (14-inch, M3 Pro, 2023)",
        "Mac15,6",
        "MacBook Pro",
        "Apple M3 Pro",
        11,
        "18 GB",
        494.38,
        true,
        "MBP 14.2 SB/11C CPU/14C GPU/18GB/512GB-USA"
    ),
    m!(
        "MacBook Pro (16-inch, M4 Max, 2024)",
        "Mac16,5",
        "MacBook Pro",
        "Apple M4 Max",
        16,
        "48 GB",
        994.66,
        true,
        "MBP 16.2 SB/16C CPU/40C GPU/48GB/1TB-USA"
    ),
    m!(
        "MacBook Pro (16-inch, 2019)",
        "MacBookPro16,1",
        "MacBook Pro",
        "2.6 GHz 6-Core Intel Core i7",
        6,
        "16 GB 2667 MHz DDR4",
        494.38,
        false,
        "MBP 16 SG/2.6GHZ 6C/16GB/512GB-USA"
    ),
    m!(
        "MacBook Air (Retina, 13-inch, 2020)",
        "MacBookAir9,1",
        "MacBook Air",
        "1 GHz 4-Core Intel Core i5",
        4,
        "8 GB 3733MHz LPDDR4X",
        233.47,
        false,
        "MBA 13.3 GLD/1.1GHZ QC/8GB/256GB-USA"
    ),
    m!(
        "Mac mini (M2, 2023)",
        "Mac14,3",
        "Mac mini",
        "Apple M2",
        8,
        "16 GB",
        494.38,
        true,
        "MAC MINI/M2 8C CPU/10C GPU/16GB/512GB"
    ),
    m!(
        "iMac (24-inch, M3, 2023)",
        "Mac15,5",
        "iMac",
        "Apple M3",
        8,
        "16 GB",
        494.38,
        true,
        "IMAC 24 BLU/8C CPU/10C GPU/16GB/512GB"
    ),
    m!(
        "Mac Studio (2023)",
        "Mac14,13",
        "Mac Studio",
        "Apple M2 Max",
        12,
        "64 GB",
        994.66,
        true,
        "MAC STUDIO/M2 MAX 12C CPU/30C GPU/64GB/1TB"
    ),
];

pub static IPHONE_MODELS: &[Model] = &[
    m!(
        "iPhone 13",
        "iPhone14,5",
        "iPhone",
        "",
        6,
        "4 GB",
        119.0,
        true,
        "IPHONE 13 BLUE 128GB-USA"
    ),
    m!(
        "iPhone 14",
        "iPhone14,7",
        "iPhone",
        "",
        6,
        "6 GB",
        119.0,
        true,
        "IPHONE 14 MIDNIGHT 128GB-USA"
    ),
    m!(
        "iPhone 15 Pro",
        "iPhone16,1",
        "iPhone",
        "",
        6,
        "8 GB",
        238.0,
        true,
        "IPHONE 15 PRO NATURAL 256GB-USA"
    ),
    m!(
        "iPhone 16",
        "iPhone17,3",
        "iPhone",
        "",
        6,
        "8 GB",
        119.0,
        true,
        "IPHONE 16 ULTRAMARINE 128GB-USA"
    ),
    m!(
        "iPhone SE (3rd generation)",
        "iPhone14,6",
        "iPhone",
        "",
        6,
        "4 GB",
        59.0,
        true,
        "IPHONE SE RED 64GB-USA"
    ),
];

pub static IPAD_MODELS: &[Model] = &[
    m!(
        "iPad (8th generation) (Wi-Fi)",
        "iPad11,6",
        "iPad",
        "",
        6,
        "3 GB",
        29.0,
        true,
        "IPAD 10.2 WI-FI 32GB SPACE GRAY"
    ),
    m!(
        "iPad (10th generation) (Wi-Fi)",
        "iPad13,18",
        "iPad",
        "",
        6,
        "4 GB",
        59.0,
        true,
        "IPAD 10.9 WI-FI 64GB BLUE"
    ),
    m!(
        "iPad Air (5th generation) (Wi-Fi + Cellular)",
        "iPad13,17",
        "iPad",
        "",
        8,
        "8 GB",
        238.0,
        true,
        "IPAD AIR 10.9 CELL 256GB PURPLE"
    ),
    m!(
        "iPad Pro (11-inch) (4th generation)",
        "iPad14,3",
        "iPad",
        "",
        8,
        "8 GB",
        119.0,
        true,
        "IPAD PRO 11 WI-FI 128GB SILVER"
    ),
];

pub static TV_MODELS: &[Model] = &[
    m!(
        "Apple TV 4K (3rd generation)",
        "AppleTV14,1",
        "Apple TV",
        "",
        6,
        "4 GB",
        59.0,
        true,
        "APPLE TV 4K WIFI 64GB"
    ),
    m!(
        "Apple TV 4K (2nd generation)",
        "AppleTV11,1",
        "Apple TV",
        "",
        6,
        "3 GB",
        29.0,
        true,
        "APPLE TV 4K 32GB"
    ),
];

pub struct OsVersion {
    pub version: &'static str,
    pub build: &'static str,
    pub marketing: &'static str,
}

macro_rules! os {
    ($v:expr, $b:expr, $m:expr) => {
        OsVersion {
            version: $v,
            build: $b,
            marketing: $m,
        }
    };
}

/// Ordered oldest to newest; an OS update moves a device to the next entry.
pub static MAC_OS: &[OsVersion] = &[
    os!("13.6.7", "22G720", "Ventura"),
    os!("14.6.1", "23G93", "Sonoma"),
    os!("14.7.1", "23H222", "Sonoma"),
    os!("15.5", "24F74", "Sequoia"),
    os!("15.7.1", "24G231", "Sequoia"),
    os!("26.0.1", "25A362", "Tahoe"),
    os!("26.1", "25B78", "Tahoe"),
];
pub static IOS_OS: &[OsVersion] = &[
    os!("17.6.1", "21G93", "iOS 17"),
    os!("18.5", "22F76", "iOS 18"),
    os!("18.7.1", "22H31", "iOS 18"),
    os!("26.0.1", "23A355", "iOS 26"),
    os!("26.1", "23B85", "iOS 26"),
];
pub static TV_OS: &[OsVersion] = &[
    os!("17.6", "21M71", "tvOS 17"),
    os!("18.5", "22L572", "tvOS 18"),
    os!("26.1", "23J582", "tvOS 26"),
];

/// Android models: `name` is the model, `short` the manufacturer, `processor` the build's
/// codename prefix, `memory` the RAM (GB), `capacity_gb` the storage.
pub static ANDROID_MODELS: &[Model] = &[
    m!(
        "Pixel 9", "tokay", "Google", "AP4A", 8, "11.28", 110.28, false, ""
    ),
    m!(
        "Pixel 8a", "akita", "Google", "AP4A", 8, "7.51", 110.28, false, ""
    ),
    m!(
        "Galaxy S24",
        "SM-S921U",
        "samsung",
        "UP1A",
        8,
        "7.38",
        228.27,
        false,
        ""
    ),
    m!(
        "Galaxy Tab S9",
        "SM-X710",
        "samsung",
        "UP1A",
        8,
        "7.38",
        110.28,
        false,
        ""
    ),
];
/// Windows models: `short` is the manufacturer.
pub static WINDOWS_MODELS: &[Model] = &[
    m!(
        "Surface Laptop 7",
        "Surface Laptop 7",
        "Microsoft",
        "Snapdragon X Elite",
        12,
        "16 GB",
        476.94,
        false,
        ""
    ),
    m!(
        "ThinkPad X1 Carbon Gen 12",
        "21KC",
        "LENOVO",
        "Intel Core Ultra 7 155U",
        12,
        "32 GB",
        953.87,
        false,
        ""
    ),
    m!(
        "OptiPlex 7010",
        "OptiPlex 7010",
        "Dell Inc.",
        "13th Gen Intel Core i5-13500",
        14,
        "16 GB",
        476.94,
        false,
        ""
    ),
];
/// Android: `version` is the release, `build` the security patch level, `marketing` the
/// API level.
pub static ANDROID_OS: &[OsVersion] = &[
    os!("14", "2024-10-05", "34"),
    os!("15", "2024-12-05", "35"),
    os!("16", "2025-10-05", "36"),
];
/// Windows: `version` is the release, `build` the full OS build.
pub static WINDOWS_OS: &[OsVersion] = &[
    os!("10", "10.0.19045.5737", "Windows 10 22H2"),
    os!("11", "10.0.22631.5335", "Windows 11 23H2"),
    os!("11", "10.0.26100.6899", "Windows 11 24H2"),
];

/// Android apps: display name, package, `application_source`, `version_name`.
pub static ANDROID_APPS: &[(&str, &str, &str, &str)] = &[
    (
        "Google Play Store",
        "com.android.vending",
        "SYSTEM_APP_FACTORY_VERSION",
        "48.2.19-31 [0] [PR] 813001354",
    ),
    (
        "Files by Google",
        "com.google.android.apps.nbu.files",
        "SYSTEM_APP_FACTORY_VERSION",
        "1.3209.622592511.0-release",
    ),
    (
        "Contacts",
        "com.google.android.contacts",
        "SYSTEM_APP_FACTORY_VERSION",
        "4.38.51.662676845",
    ),
    (
        "Chrome",
        "com.android.chrome",
        "SYSTEM_APP_FACTORY_VERSION",
        "131.0.6778.135",
    ),
    (
        "Gmail",
        "com.google.android.gm",
        "SYSTEM_APP_FACTORY_VERSION",
        "2024.11.24.702115413.Release",
    ),
    (
        "Slack",
        "com.Slack",
        "INSTALLED_FROM_PLAY_STORE",
        "25.10.10.0",
    ),
    (
        "Microsoft Teams",
        "com.microsoft.teams",
        "INSTALLED_FROM_PLAY_STORE",
        "1416/1.0.0.2024223201",
    ),
    (
        "Microsoft Outlook",
        "com.microsoft.office.outlook",
        "INSTALLED_FROM_PLAY_STORE",
        "4.2446.1",
    ),
    (
        "Zoom Workplace",
        "us.zoom.videomeetings",
        "INSTALLED_FROM_PLAY_STORE",
        "6.3.1.26548",
    ),
    (
        "1Password",
        "com.onepassword.android",
        "INSTALLED_FROM_PLAY_STORE",
        "8.10.52",
    ),
];

pub static FIRST_NAMES: &[&str] = &[
    "Ada",
    "Alan",
    "Grace",
    "Linus",
    "Margaret",
    "Dennis",
    "Barbara",
    "Ken",
    "Radia",
    "Edsger",
    "Frances",
    "Donald",
    "Katherine",
    "John",
    "Hedy",
    "Tim",
    "Anita",
    "Guido",
    "Shafi",
    "Niklaus",
    "Joan",
    "Bjarne",
    "Lynn",
    "Whitfield",
    "Sophie",
    "Yukihiro",
    "Carol",
    "Brian",
    "Mary",
    "Leslie",
    "Zoë",
    "José",
    "Renée",
    "Søren",
    "Chloé",
    "O'Brien",
];
pub static LAST_NAMES: &[&str] = &[
    "Lovelace",
    "Turing",
    "Hopper",
    "Torvalds",
    "Hamilton",
    "Ritchie",
    "Liskov",
    "Thompson",
    "Perlman",
    "Dijkstra",
    "Allen",
    "Knuth",
    "Johnson",
    "McCarthy",
    "Lamarr",
    "Berners-Lee",
    "Borg",
    "van Rossum",
    "Goldwasser",
    "Wirth",
    "Clarke",
    "Stroustrup",
    "Conway",
    "Diffie",
    "Wilson",
    "Matsumoto",
    "Shaw",
    "Kernighan",
    "Shelley",
    "Lamport",
    "Núñez",
    "García",
    "Müller",
];
pub static DEPARTMENTS: &[&str] = &[
    "Engineering",
    "Sales",
    "Finance",
    "Marketing",
    "IT",
    "Legal",
    "Support",
    "Design",
];
pub static JOB_TITLES: &[&str] = &[
    "Engineer",
    "Account Executive",
    "Analyst",
    "Manager",
    "Designer",
    "Administrator",
    "Director",
];

/// Markup that must be escaped by any console showing the data.
pub static XSS: &[&str] = &[
    "<script>alert(1)</script>",
    "\"><img src=x onerror=alert(1)>",
    "<svg/onload=alert('x')>",
    "';!--\"<XSS>=&{()}",
];

pub static BLUEPRINT_NAMES: &[&str] = &[
    "Default Blueprint",
    "Engineering Macs",
    "Sales Laptops",
    "Executive",
    "Kiosk iPads",
    "Field iPhones",
    "Conference Rooms",
    "Lab Machines",
    "Finance (SOX)",
    "Contractors",
    "Retail Stores",
    "Design Studio",
];
pub static BLUEPRINT_COLORS: &[&str] = &[
    "aqua-500",
    "aqua-800",
    "orange-300",
    "blue-400",
    "green-500",
    "red-400",
    "purple-600",
];
pub static BLUEPRINT_ICONS: &[&str] = &[
    "ss-files",
    "ss-paintdisabled",
    "ss-attach",
    "ss-laptop",
    "ss-phone",
    "ss-tv",
];

pub static TAG_NAMES: &[&str] = &[
    "remote",
    "hq",
    "loaner",
    "vip",
    "byod-exempt",
    "pilot",
    "emea",
    "apac",
    "contractor",
    "<b>bold-tag</b>",
    "soc2",
    "lab",
];

/// Library items (name, type, is_configuration_profile, platforms bitmask Mac=1 iPhone=2 iPad=4 TV=8).
pub static LIBRARY_ITEMS: &[(&str, &str, bool, u8)] = &[
    ("Avert", "threat-security-policy", false, 1),
    ("Google Chrome", "automatic-app", false, 1),
    ("Zoom", "custom-app", false, 1),
    ("Slack", "automatic-app", false, 1),
    ("Microsoft Office", "automatic-app", false, 1),
    ("1Password", "automatic-app", false, 1 | 2 | 4),
    ("Set Desktop Wallpaper", "custom-script", false, 1),
    ("Install Rosetta", "custom-script", false, 1),
    ("macOS Tahoe", "macos-release", false, 1),
    ("Kandji Setup", "kandji-setup", false, 1),
    ("Wi-Fi Corp", "profile-wifi", true, 15),
    ("Passcode Policy", "profile-passcode", true, 1 | 2 | 4),
    ("FileVault", "profile-filevault", true, 1),
    ("Privacy Preferences", "custom-profile", true, 1),
    ("Microsoft Teams", "vpp-app", false, 2 | 4),
    ("Outlook", "vpp-app", false, 2 | 4),
    ("Okta Verify", "vpp-app", false, 1 | 2 | 4),
    ("Restrictions", "profile-restrictions", true, 2 | 4 | 8),
    (
        "Home Screen Layout",
        "profile-home-screen-layout",
        true,
        4 | 8,
    ),
    (
        "Conference Room Display",
        "profile-conference-room-display",
        true,
        8,
    ),
    ("<script>alert(1)</script> Helper", "custom-app", false, 1),
    ("Self Service Tools", "custom-app", false, 1),
];

/// Compliance parameters (Mac only): (name, category, subcategory).
pub static PARAMETERS: &[(&str, &str, &str)] = &[
    (
        "Disable the \"root\" user",
        "User Accounts & Authentication",
        "User Accounts",
    ),
    (
        "Require password after sleep or screen saver",
        "User Accounts & Authentication",
        "Login Window",
    ),
    (
        "Disable automatic login",
        "User Accounts & Authentication",
        "Login Window",
    ),
    ("Enable Gatekeeper", "Security & Privacy", "Gatekeeper"),
    (
        "Enable the application firewall",
        "Security & Privacy",
        "Firewall",
    ),
    ("Enable stealth mode", "Security & Privacy", "Firewall"),
    ("Enable FileVault", "Security & Privacy", "FileVault"),
    (
        "Enforce System Integrity Protection",
        "Security & Privacy",
        "System Integrity",
    ),
    ("Disable Remote Apple Events", "Sharing", "Remote Services"),
    ("Disable Screen Sharing", "Sharing", "Remote Services"),
    ("Disable Bluetooth Sharing", "Sharing", "Bluetooth"),
    ("Set time server", "Date & Time", "Network Time"),
    (
        "Install macOS updates automatically",
        "Software Updates",
        "macOS",
    ),
    (
        "Enable XProtect updates",
        "Software Updates",
        "Security Data",
    ),
    (
        "Ensure an administrator account cannot login to another user's active session",
        "User Accounts & Authentication",
        "Sessions",
    ),
    (
        "Disable guest account",
        "User Accounts & Authentication",
        "User Accounts",
    ),
];

pub static PARAM_STATUSES: &[&str] = &[
    "PASS",
    "PASS",
    "PASS",
    "PASS",
    "PASS",
    "PASS",
    "ERROR",
    "PENDING",
    "REMEDIATED",
    "WARNING",
    "INCOMPATIBLE",
];
pub static ITEM_STATUSES: &[&str] = &[
    "PASS",
    "PASS",
    "PASS",
    "PASS",
    "PASS",
    "PASS",
    "PASS",
    "ERROR",
    "PENDING",
    "INSTALLING",
    "EXCLUDED",
    "INCOMPATIBLE",
    "AVAILABLE",
    "CACHED",
    "CHANGE_PENDING",
    "DOWNLOADING",
];
pub static PROFILE_STATUSES: &[&str] = &[
    "success", "success", "success", "success", "pending", "failed",
];

/// App catalog entry.
pub struct App {
    pub name: &'static str,
    pub bundle_id: &'static str,
    pub vendor: &'static str,
    pub team_id: &'static str,
    pub source: &'static str,
    pub category: &'static str,
}

macro_rules! app {
    ($n:expr, $b:expr, $v:expr, $t:expr, $s:expr, $c:expr) => {
        App {
            name: $n,
            bundle_id: $b,
            vendor: $v,
            team_id: $t,
            source: $s,
            category: $c,
        }
    };
}

/// Apple apps present on every Mac.
pub static MAC_SYSTEM_APPS: &[App] = &[
    app!(
        "Safari",
        "com.apple.Safari",
        "Apple Inc.",
        "",
        "Apple",
        "public.app-category.productivity"
    ),
    app!(
        "Mail",
        "com.apple.mail",
        "Apple Inc.",
        "",
        "Apple",
        "public.app-category.productivity"
    ),
    app!(
        "Calendar",
        "com.apple.iCal",
        "Apple Inc.",
        "",
        "Apple",
        "public.app-category.productivity"
    ),
    app!(
        "Notes",
        "com.apple.Notes",
        "Apple Inc.",
        "",
        "Apple",
        "public.app-category.productivity"
    ),
    app!(
        "Music",
        "com.apple.Music",
        "Apple Inc.",
        "",
        "Apple",
        "public.app-category.music"
    ),
    app!(
        "Photos",
        "com.apple.Photos",
        "Apple Inc.",
        "",
        "Apple",
        "public.app-category.photography"
    ),
    app!(
        "Messages",
        "com.apple.MobileSMS",
        "Apple Inc.",
        "",
        "Apple",
        "public.app-category.social-networking"
    ),
    app!(
        "FaceTime",
        "com.apple.FaceTime",
        "Apple Inc.",
        "",
        "Apple",
        "public.app-category.social-networking"
    ),
    app!(
        "Maps",
        "com.apple.Maps",
        "Apple Inc.",
        "",
        "Apple",
        "public.app-category.navigation"
    ),
    app!(
        "App Store",
        "com.apple.AppStore",
        "Apple Inc.",
        "",
        "Apple",
        "public.app-category.utilities"
    ),
    app!(
        "System Settings",
        "com.apple.systempreferences",
        "Apple Inc.",
        "",
        "Apple",
        "public.app-category.utilities"
    ),
    app!(
        "Terminal",
        "com.apple.Terminal",
        "Apple Inc.",
        "",
        "Apple",
        "public.app-category.developer-tools"
    ),
    app!(
        "Activity Monitor",
        "com.apple.ActivityMonitor",
        "Apple Inc.",
        "",
        "Apple",
        "public.app-category.utilities"
    ),
    app!(
        "Console",
        "com.apple.Console",
        "Apple Inc.",
        "",
        "Apple",
        "public.app-category.utilities"
    ),
    app!(
        "Disk Utility",
        "com.apple.DiskUtility",
        "Apple Inc.",
        "",
        "Apple",
        "public.app-category.utilities"
    ),
    app!(
        "Preview",
        "com.apple.Preview",
        "Apple Inc.",
        "",
        "Apple",
        "public.app-category.productivity"
    ),
    app!(
        "TextEdit",
        "com.apple.TextEdit",
        "Apple Inc.",
        "",
        "Apple",
        "public.app-category.productivity"
    ),
    app!(
        "Calculator",
        "com.apple.calculator",
        "Apple Inc.",
        "",
        "Apple",
        "public.app-category.utilities"
    ),
    app!(
        "Keychain Access",
        "com.apple.keychainaccess",
        "Apple Inc.",
        "",
        "Apple",
        "public.app-category.utilities"
    ),
    app!(
        "Finder",
        "com.apple.finder",
        "Apple Inc.",
        "",
        "Apple",
        "public.app-category.utilities"
    ),
    app!(
        "Xcode",
        "com.apple.dt.Xcode",
        "Apple Inc.",
        "",
        "Mac App Store",
        "public.app-category.developer-tools"
    ),
    app!(
        "Pages",
        "com.apple.iWork.Pages",
        "Apple Inc.",
        "",
        "Mac App Store",
        "public.app-category.productivity"
    ),
    app!(
        "Numbers",
        "com.apple.iWork.Numbers",
        "Apple Inc.",
        "",
        "Mac App Store",
        "public.app-category.productivity"
    ),
    app!(
        "Keynote",
        "com.apple.iWork.Keynote",
        "Apple Inc.",
        "",
        "Mac App Store",
        "public.app-category.productivity"
    ),
];

/// Popular third-party Mac apps.
pub static MAC_APPS: &[App] = &[
    app!(
        "Google Chrome",
        "com.google.Chrome",
        "Google LLC",
        "EQHXZ8M8AV",
        "Identified Developer",
        "public.app-category.productivity"
    ),
    app!(
        "Slack",
        "com.tinyspeck.slackmacgap",
        "Slack Technologies, Inc.",
        "BQR82RBBHL",
        "Identified Developer",
        "public.app-category.business"
    ),
    app!(
        "zoom.us",
        "us.zoom.xos",
        "Zoom Video Communications, Inc.",
        "BJ4HAAB9B3",
        "Identified Developer",
        "public.app-category.business"
    ),
    app!(
        "Microsoft Word",
        "com.microsoft.Word",
        "Microsoft Corporation",
        "UBF8T346G9",
        "Identified Developer",
        "public.app-category.productivity"
    ),
    app!(
        "Microsoft Excel",
        "com.microsoft.Excel",
        "Microsoft Corporation",
        "UBF8T346G9",
        "Identified Developer",
        "public.app-category.productivity"
    ),
    app!(
        "Microsoft Outlook",
        "com.microsoft.Outlook",
        "Microsoft Corporation",
        "UBF8T346G9",
        "Identified Developer",
        "public.app-category.productivity"
    ),
    app!(
        "Microsoft Teams",
        "com.microsoft.teams2",
        "Microsoft Corporation",
        "UBF8T346G9",
        "Identified Developer",
        "public.app-category.business"
    ),
    app!(
        "1Password 7",
        "com.agilebits.onepassword7",
        "AgileBits Inc.",
        "2BUA8C4S2C",
        "Identified Developer",
        "public.app-category.productivity"
    ),
    app!(
        "Firefox",
        "org.mozilla.firefox",
        "Mozilla Corporation",
        "43AQ936H96",
        "Identified Developer",
        "public.app-category.productivity"
    ),
    app!(
        "Visual Studio Code",
        "com.microsoft.VSCode",
        "Microsoft Corporation",
        "UBF8T346G9",
        "Identified Developer",
        "public.app-category.developer-tools"
    ),
    app!(
        "Docker",
        "com.docker.docker",
        "Docker Inc",
        "9BNSXJN65R",
        "Identified Developer",
        "public.app-category.developer-tools"
    ),
    app!(
        "iTerm",
        "com.googlecode.iterm2",
        "GEORGE NACHMAN",
        "H7V7XYVQ7D",
        "Identified Developer",
        "public.app-category.developer-tools"
    ),
    app!(
        "Figma",
        "com.figma.Desktop",
        "Figma, Inc.",
        "T8RA8NE3B7",
        "Identified Developer",
        "public.app-category.graphics-design"
    ),
    app!(
        "Notion",
        "notion.id",
        "Notion Labs, Incorporated",
        "LBQJ96FQ8D",
        "Identified Developer",
        "public.app-category.productivity"
    ),
    app!(
        "Spotify",
        "com.spotify.client",
        "Spotify",
        "2FNC3A47ZF",
        "Identified Developer",
        "public.app-category.music"
    ),
    app!(
        "Kandji Self Service",
        "io.kandji.Kandji-Menu",
        "Kandji, Inc.",
        "P3FGV63VK7",
        "Identified Developer",
        "public.app-category.utilities"
    ),
    app!(
        "Okta Verify",
        "com.okta.mobile",
        "Okta, Inc.",
        "B7F62B65BN",
        "Mac App Store",
        "public.app-category.business"
    ),
    app!(
        "Adobe Acrobat Reader",
        "com.adobe.Reader",
        "Adobe Inc.",
        "JQ525L2MZD",
        "Identified Developer",
        "public.app-category.productivity"
    ),
    app!(
        "Postman",
        "com.postmanlabs.mac",
        "Postman, Inc.",
        "H7H8Q7M5CK",
        "Identified Developer",
        "public.app-category.developer-tools"
    ),
    app!(
        "TextWrangler <script>alert(1)</script>",
        "com.example.xss-one",
        "Evil Corp <b>",
        "XSS0000001",
        "Unknown",
        "public.app-category.utilities"
    ),
];

/// Long-tail vendor and product words for synthetic Mac apps.
pub static TAIL_VENDORS: &[&str] = &[
    "Acme",
    "Globex",
    "Initech",
    "Umbrella",
    "Hooli",
    "Stark",
    "Wayne",
    "Tyrell",
    "Cyberdyne",
    "Soylent",
    "Wonka",
    "Aperture",
    "Vandelay",
    "Pied Piper",
];
pub static TAIL_PRODUCTS: &[&str] = &[
    "Sync", "Notes", "Capture", "Monitor", "VPN", "Backup", "Studio", "Reader", "Mail", "Cleaner",
    "Timer", "Fonts", "Agent", "Helper", "Updater",
];

/// iOS App Store apps.
pub static IOS_APPS: &[&str] = &[
    "Slack",
    "Microsoft Outlook",
    "Microsoft Teams",
    "Zoom",
    "Okta Verify",
    "1Password",
    "Google Chrome",
    "Gmail",
    "Google Maps",
    "Microsoft Authenticator",
    "Salesforce",
    "Workday",
    "Concur",
    "Box",
    "Dropbox",
    "Notion",
    "Asana",
    "Trello",
    "Jira Cloud",
    "Confluence Cloud",
    "Webex",
    "DocuSign",
    "Adobe Acrobat Reader",
    "Microsoft Word",
    "Microsoft Excel",
    "Microsoft PowerPoint",
    "OneDrive",
    "Google Drive",
    "Spotify",
    "WhatsApp",
    "Signal",
    "Uber",
    "Lyft",
    "Expensify",
    "LinkedIn",
    "Duo Mobile",
    "Zendesk",
    "HubSpot",
    "Tableau Mobile",
    "Miro",
    "Figma",
    "Calendly",
    "Evernote",
    "Todoist",
    "Headspace",
    "Weather <img src=x onerror=alert(1)>",
    "Citrix Workspace",
    "ServiceNow Agent",
    "Airtable",
    "Canva",
    "Loom",
    "Pocket",
    "Reeder",
    "Things 3",
    "Fantastical",
    "Bear",
    "Day One",
];

pub static TV_APPS: &[&str] = &[
    "Zoom Rooms",
    "YouTube",
    "Netflix",
    "Webex",
    "Airtame",
    "Kiosk Pro",
];

/// CVE catalog: (cve, software name, bundle id, severity, score, kev).
pub static CVES: &[(&str, &str, &str, &str, f64, u8)] = &[
    (
        "CVE-2024-24795",
        "macOS 14 Sonoma",
        "com.apple.macos",
        "High",
        7.5,
        0,
    ),
    (
        "CVE-2024-44308",
        "Safari",
        "com.apple.Safari",
        "High",
        8.8,
        1,
    ),
    (
        "CVE-2024-7971",
        "Google Chrome",
        "com.google.Chrome",
        "High",
        8.8,
        1,
    ),
    (
        "CVE-2025-2783",
        "Google Chrome",
        "com.google.Chrome",
        "Critical",
        9.6,
        1,
    ),
    (
        "CVE-2024-29510",
        "Microsoft Word",
        "com.microsoft.Word",
        "Medium",
        5.5,
        0,
    ),
    (
        "CVE-2025-21298",
        "Microsoft Outlook",
        "com.microsoft.Outlook",
        "Critical",
        9.8,
        0,
    ),
    (
        "CVE-2024-9680",
        "Firefox",
        "org.mozilla.firefox",
        "Critical",
        9.8,
        1,
    ),
    ("CVE-2024-45490", "zoom.us", "us.zoom.xos", "Medium", 6.5, 0),
    (
        "CVE-2024-27198",
        "Docker",
        "com.docker.docker",
        "High",
        7.8,
        0,
    ),
    (
        "CVE-2023-4863",
        "Slack",
        "com.tinyspeck.slackmacgap",
        "High",
        8.8,
        1,
    ),
    (
        "CVE-2024-43047",
        "Visual Studio Code",
        "com.microsoft.VSCode",
        "Low",
        3.3,
        0,
    ),
    (
        "CVE-2025-24085",
        "macOS 15 Sequoia",
        "com.apple.macos",
        "High",
        7.8,
        1,
    ),
    (
        "CVE-2024-40857",
        "Safari",
        "com.apple.Safari",
        "Medium",
        6.1,
        0,
    ),
    (
        "CVE-2025-0411",
        "Adobe Acrobat Reader",
        "com.adobe.Reader",
        "High",
        7.0,
        0,
    ),
    (
        "CVE-2024-6387",
        "iTerm",
        "com.googlecode.iterm2",
        "Low",
        2.4,
        0,
    ),
];

/// Malware / PUP names.
pub static THREATS: &[(&str, &str)] = &[
    ("Adload", "MALWARE"),
    ("Pirrit", "PUP"),
    ("XCSSET", "MALWARE"),
    ("Shlayer", "MALWARE"),
    ("Genieo", "PUP"),
    ("MacKeeper", "PUP"),
    ("Atomic Stealer", "MALWARE"),
    ("Bundlore", "PUP"),
    ("EICAR-Test-File <script>alert(1)</script>", "MALWARE"),
];

/// Behavioral detection rules: (threat_id, description, classification).
pub static BD_RULES: &[(&str, &str, &str)] = &[
    (
        "KTI_BD_0163",
        "Suspicious shell spawned by an editor",
        "suspicious",
    ),
    (
        "KTI_BD_0042",
        "Persistence via LaunchAgent written by an unsigned binary",
        "malicious",
    ),
    (
        "KTI_BD_0107",
        "Keychain dumped with security CLI",
        "malicious",
    ),
    ("KTI_BD_0201", "Curl piped to shell", "suspicious"),
    ("KTI_BD_0077", "TCC database modified directly", "malicious"),
];

/// A CVE entry: (cve, software name, bundle id, severity, score, kev).
pub type Cve = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    f64,
    u8,
);

/// The most CVEs a tenant can have (detections index them with a `u8`).
pub const MAX_CVES: usize = 255;

/// The CVE table: the catalog's real entries, then synthesized ones (`CVE-2025-4xxxx`, the
/// catalog's software in turn) up to [`MAX_CVES`], so that a large fleet's vulnerability list
/// spans several pages. Built once.
pub fn cve_table() -> &'static [Cve] {
    static TABLE: std::sync::OnceLock<Vec<Cve>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        let mut v: Vec<Cve> = CVES.to_vec();
        const SEV: [(&str, f64); 4] = [
            ("Critical", 9.1),
            ("High", 7.8),
            ("Medium", 5.5),
            ("Low", 3.1),
        ];
        for k in CVES.len()..MAX_CVES {
            let base = CVES[k % CVES.len()];
            // Invariant: a bounded table built once per process; its strings live as long.
            let id: &'static str =
                Box::leak(format!("CVE-2025-{}", 40_000 + k * 37).into_boxed_str());
            let (sev, score) = SEV[k % SEV.len()];
            v.push((id, base.1, base.2, sev, score, u8::from(k % 11 == 0)));
        }
        v
    })
}
