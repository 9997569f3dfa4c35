// idlereset verify driver: one idle connection of a real JVM client library.
//
// usage: java -cp CLASSES:postgresql.jar:HikariCP.jar:slf4j-api.jar:slf4j-simple.jar \
//            Driver LIBRARY TARGET_JSON IDLE_S SETTINGS_JSON
//
// LIBRARY is `pgjdbc` (DriverManager, one connection) or `hikaricp` (a HikariCP pool of one
// connection over PgJDBC). TARGET_JSON holds `url` (jdbc:postgresql://...) and `user`;
// SETTINGS_JSON the library's own properties (PgJDBC connection parameters such as
// `tcpKeepAlive`; HikariConfig properties such as `idleTimeout`, `maxLifetime`,
// `dataSource.tcpKeepAlive`), {} = the library's defaults. Prints {"event":"connected",...}
// after the first query, stays idle IDLE_S seconds, runs one more query and prints
// {"event":"result",...}. The application log goes to stderr through SLF4J (slf4j-simple with
// timestamps), so HikariCP's own WARN lines appear as they would in an application, and a
// failure is logged as `log.error(msg, e)`: a timestamped line, then the stack trace with its
// `Caused by:` lines.
//
// Built once per run by `verify` (javac into a cache directory); no JSON library is needed:
// both arguments are flat objects of strings, numbers, booleans and nulls.

import java.lang.reflect.Field;
import java.net.Socket;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.ResultSet;
import java.sql.Statement;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Properties;

import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

public final class Driver {
    private static final Logger log = LoggerFactory.getLogger("app");

    /** A flat JSON object: string keys, scalar values (strings, numbers, booleans, null). */
    static Map<String, String> flat(String s) {
        Map<String, String> out = new LinkedHashMap<>();
        int i = s.indexOf('{') + 1;
        while (i > 0 && i < s.length()) {
            i = skip(s, i);
            if (i >= s.length() || s.charAt(i) == '}') {
                break;
            }
            StringBuilder key = new StringBuilder();
            i = str(s, i, key);
            i = skip(s, i);
            i++; // ':'
            i = skip(s, i);
            String val;
            if (s.charAt(i) == '"') {
                StringBuilder v = new StringBuilder();
                i = str(s, i, v);
                val = v.toString();
            } else {
                int j = i;
                while (j < s.length() && ",} \n\t".indexOf(s.charAt(j)) < 0) {
                    j++;
                }
                val = s.substring(i, j);
                i = j;
            }
            if (!"null".equals(val)) {
                out.put(key.toString(), val);
            }
            i = skip(s, i);
            if (i < s.length() && s.charAt(i) == ',') {
                i++;
            }
        }
        return out;
    }

    private static int skip(String s, int i) {
        while (i < s.length() && Character.isWhitespace(s.charAt(i))) {
            i++;
        }
        return i;
    }

    private static int str(String s, int i, StringBuilder out) {
        i++; // opening quote
        while (i < s.length() && s.charAt(i) != '"') {
            char c = s.charAt(i);
            if (c == '\\' && i + 1 < s.length()) {
                i++;
                c = s.charAt(i);
            }
            out.append(c);
            i++;
        }
        return i + 1;
    }

    static String quote(String s) {
        StringBuilder b = new StringBuilder("\"");
        for (char c : s.toCharArray()) {
            if (c == '"' || c == '\\') {
                b.append('\\').append(c);
            } else if (c < 0x20) {
                b.append(String.format("\\u%04x", (int) c));
            } else {
                b.append(c);
            }
        }
        return b.append('"').toString();
    }

    static synchronized void emit(String json) {
        System.out.println(json);
        System.out.flush();
    }

    /** The physical PgJDBC connection under a (possibly pooled) connection. */
    static org.postgresql.PGConnection pg(Connection c) throws Exception {
        return c.unwrap(org.postgresql.PGConnection.class);
    }

    /** Local port of the connection's socket (PgJDBC keeps it in its QueryExecutor's PGStream). */
    static int localPort(Connection c) {
        try {
            Object qe = c.unwrap(org.postgresql.core.BaseConnection.class).getQueryExecutor();
            for (Class<?> k = qe.getClass(); k != null; k = k.getSuperclass()) {
                try {
                    Field f = k.getDeclaredField("pgStream");
                    f.setAccessible(true);
                    Socket s = ((org.postgresql.core.PGStream) f.get(qe)).getSocket();
                    return s.getLocalPort();
                } catch (NoSuchFieldException e) {
                    // look in the superclass
                }
            }
        } catch (Exception e) {
            log.debug("local port unknown", e);
        }
        // Fallback: the server's view of the client port (the same without NAT on the path).
        try (Statement st = c.createStatement(); ResultSet rs = st.executeQuery("select inet_client_port()")) {
            rs.next();
            return rs.getInt(1);
        } catch (Exception e) {
            return 0;
        }
    }

    static String one(Connection c, String tag) throws Exception {
        try (Statement st = c.createStatement(); ResultSet rs = st.executeQuery("select '" + tag + "'")) {
            rs.next();
            return rs.getString(1);
        }
    }

    static String pgjdbcVersion() {
        return org.postgresql.util.DriverInfo.DRIVER_VERSION;
    }

    /** A jar's version from its manifest (HikariCP's carries only the OSGi Bundle-Version). */
    static String bundleVersion(Class<?> k) {
        String v = k.getPackage().getImplementationVersion();
        if (v != null) {
            return v;
        }
        try (java.util.jar.JarFile j = new java.util.jar.JarFile(k.getProtectionDomain().getCodeSource().getLocation().getPath())) {
            v = j.getManifest().getMainAttributes().getValue("Bundle-Version");
        } catch (Exception e) {
            v = null;
        }
        return v == null ? "unknown" : v;
    }

    static void connected(String library, String version, String wrapper, Connection c) throws Exception {
        int port = localPort(c);
        int pid = pg(c).getBackendPID();
        emit("{\"event\":\"connected\",\"library\":" + quote(library) + ",\"version\":" + quote(version)
                + (wrapper == null ? "" : ",\"wrapper\":" + quote(wrapper))
                + ",\"local_port\":" + port + ",\"backend_pid\":" + pid + "}");
    }

    /** PgJDBC alone: one connection from DriverManager, as a plain JDBC application holds it. */
    static boolean[] pgjdbc(Map<String, String> target, double idle, Map<String, String> settings) throws Exception {
        Properties p = new Properties();
        p.setProperty("user", target.get("user"));
        p.setProperty("connectTimeout", "5");
        p.setProperty("ApplicationName", "idlereset-verify");
        p.putAll(settings);
        Connection c = DriverManager.getConnection(target.get("url"), p);
        one(c, "before");
        connected("pgjdbc", pgjdbcVersion(), null, c);
        log.info("connected {} backend_pid={} conn={}, idle for {}s", c, pg(c).getBackendPID(), localPort(c), idle);
        Thread.sleep((long) (idle * 1000));
        boolean ok = "after".equals(one(c, "after"));
        c.close();
        return new boolean[] {ok, false, false};
    }

    /** Set when HikariCP logged that a connection failed validation on borrow. */
    static volatile boolean validationFailed;

    /** Application log on stderr, watching for HikariCP's validation WARN (slf4j-simple prints
     *  each record with println on the current System.err). */
    static void watchLog() {
        System.setErr(new java.io.PrintStream(new java.io.FileOutputStream(java.io.FileDescriptor.err), true) {
            @Override
            public void println(String x) {
                if (x != null && x.contains("Failed to validate connection")) {
                    validationFailed = true;
                }
                super.println(x);
            }
        });
    }

    /** HikariCP: a pool of one connection (HikariConfig from properties, as Spring Boot binds them). */
    static boolean[] hikari(Map<String, String> target, double idle, Map<String, String> settings) throws Exception {
        Properties p = new Properties();
        p.setProperty("jdbcUrl", target.get("url"));
        p.setProperty("username", target.get("user"));
        p.setProperty("poolName", "app-pool");
        p.setProperty("maximumPoolSize", "1");
        p.setProperty("connectionTimeout", "10000");
        p.setProperty("dataSource.connectTimeout", "5");
        p.setProperty("dataSource.ApplicationName", "idlereset-verify");
        p.putAll(settings);
        com.zaxxer.hikari.HikariDataSource ds = new com.zaxxer.hikari.HikariDataSource(new com.zaxxer.hikari.HikariConfig(p));
        int before;
        try (Connection c = ds.getConnection()) {
            one(c, "before");
            connected("hikaricp", bundleVersion(com.zaxxer.hikari.HikariConfig.class), "PgJDBC " + pgjdbcVersion(), c);
            before = pg(c).getBackendPID();
            log.info("connected {} backend_pid={} conn={}, idle for {}s", c, before, localPort(c), idle);
        }
        Thread.sleep((long) (idle * 1000));
        boolean ok;
        int after;
        try (Connection c = ds.getConnection()) {
            ok = "after".equals(one(c, "after"));
            after = pg(c).getBackendPID();
        }
        boolean hidden = after != before && validationFailed;
        if (hidden) {
            log.warn("backend_pid={} was replaced by backend_pid={} after {}s idle (the pool validated and replaced it)", before, after, idle);
        }
        ds.close();
        return new boolean[] {ok, hidden, after != before};
    }

    public static void main(String[] args) {
        watchLog();
        String lib = args[0];
        Map<String, String> target = flat(args[1]);
        double idle = Double.parseDouble(args[2]);
        Map<String, String> settings = flat(args[3]);
        try {
            boolean[] r = "hikaricp".equals(lib) ? hikari(target, idle, settings) : pgjdbc(target, idle, settings);
            emit("{\"event\":\"result\",\"outcome\":" + quote(r[0] ? "survived" : "error") + ",\"retried\":" + r[1] + ",\"replaced\":" + r[2] + ",\"error\":null}");
        } catch (Throwable e) {
            // The application's view: whatever the library threw, logged as applications do.
            log.error("query failed after {}s idle", idle, e);
            String msg = e.getMessage() == null ? e.getClass().getName() : e.getMessage().trim().split("\n")[0];
            emit("{\"event\":\"result\",\"outcome\":\"error\",\"retried\":false,\"error\":" + quote(msg) + "}");
        }
        System.exit(0);
    }
}
