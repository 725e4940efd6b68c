// The kit's Neo4j server for its end-to-end tier: Neo4j Community embedded
// (org.neo4j:neo4j from pom.xml) with only its Bolt connector listening, data
// under /data, auth on. Built into the image "neo4j" by yuxi_k8s.app.images.
//
// Environment (the official image's names where it has one):
//   NEO4J_AUTH                          neo4j/<password>: the initial password of user
//                                       neo4j, set on the first start only (what the
//                                       official image does with neo4j-admin)
//   NEO4J_server_bolt_listen__address   [host]:port of Bolt (default 0.0.0.0:7687)
//   NEO4J_server_memory_pagecache_size  page cache (default 64m)
//   NEO4J_DATA                          data folder (default /data)
//   NEO4J_PLUGINS_DIR                   procedure jars loaded at start (default
//                                       /opt/neo4j/plugins: APOC core)
// Other NEO4J_* settings are not read (one line names them). Heap: JDK_JAVA_OPTIONS.

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.HashMap;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.CountDownLatch;
import java.util.stream.Collectors;
import org.neo4j.configuration.Config;
import org.neo4j.configuration.GraphDatabaseInternalSettings;
import org.neo4j.configuration.GraphDatabaseSettings;
import org.neo4j.configuration.connectors.BoltConnector;
import org.neo4j.configuration.connectors.BoltConnectorInternalSettings;
import org.neo4j.configuration.helpers.SocketAddress;
import org.neo4j.dbms.api.DatabaseManagementService;
import org.neo4j.dbms.api.DatabaseManagementServiceBuilder;
import org.neo4j.graphdb.config.Setting;
import org.neo4j.io.ByteUnit;
import org.neo4j.io.fs.DefaultFileSystemAbstraction;
import org.neo4j.io.fs.FileSystemAbstraction;
import org.neo4j.kernel.impl.security.User;
import org.neo4j.logging.NullLogProvider;
import org.neo4j.memory.EmptyMemoryTracker;
import org.neo4j.server.security.SecureHasher;
import org.neo4j.server.security.SystemGraphCredential;
import org.neo4j.server.security.auth.CommunitySecurityModule;
import org.neo4j.server.security.auth.FileUserRepository;

public final class Launcher {
    private static final String USER = "neo4j";
    private static final int MIN_PASSWORD_LENGTH = 8; // Neo4j's dbms.security.auth_minimum_password_length
    private static final String BOLT_ADDRESS = "NEO4J_server_bolt_listen__address";
    private static final String PAGE_CACHE = "NEO4J_server_memory_pagecache_size";
    private static final Set<String> READ =
            Set.of("NEO4J_AUTH", BOLT_ADDRESS, PAGE_CACHE, "NEO4J_DATA", "NEO4J_PLUGINS_DIR");

    private Launcher() {}

    public static void main(String[] args) throws Exception {
        long started = System.nanoTime();
        String password;
        SocketAddress bolt;
        try {
            password = password(System.getenv("NEO4J_AUTH"));
            bolt = listenAddress(env(BOLT_ADDRESS, "0.0.0.0:7687"));
        } catch (IllegalArgumentException e) {
            System.err.println("neo4j: " + e.getMessage());
            System.exit(2);
            return;
        }
        Path data = Path.of(env("NEO4J_DATA", "/data")).toAbsolutePath();
        Path plugins = Path.of(env("NEO4J_PLUGINS_DIR", "/opt/neo4j/plugins")).toAbsolutePath();
        String pageCache = env(PAGE_CACHE, "64m");
        String ignored = System.getenv().keySet().stream()
                .filter(name -> name.startsWith("NEO4J_") && !READ.contains(name))
                .sorted()
                .collect(Collectors.joining(", "));
        if (!ignored.isEmpty()) {
            System.err.println("neo4j: not read here (only Bolt listens; heap: JDK_JAVA_OPTIONS): " + ignored);
        }

        Map<Setting<?>, Object> settings = new HashMap<>();
        settings.put(GraphDatabaseSettings.data_directory, data);
        settings.put(GraphDatabaseSettings.logs_directory, data.resolve("logs"));
        settings.put(GraphDatabaseSettings.plugin_dir, plugins);
        settings.put(GraphDatabaseSettings.auth_enabled, true);
        settings.put(GraphDatabaseSettings.pagecache_memory, ByteUnit.parse(pageCache));
        settings.put(BoltConnector.enabled, true);
        settings.put(BoltConnector.listen_address, bolt);
        settings.put(BoltConnector.encryption_level, BoltConnector.EncryptionLevel.DISABLED);
        // nothing else listens, and nothing calls out (usage reports)
        settings.put(GraphDatabaseSettings.routing_enabled, false);
        settings.put(GraphDatabaseSettings.udc_enabled, false);
        // a pod's stop: seconds, not the 10 s of Bolt's default waits for connections already closed
        settings.put(GraphDatabaseSettings.shutdown_transaction_end_timeout, Duration.ofSeconds(5));
        settings.put(BoltConnectorInternalSettings.connection_shutdown_wait_time, Duration.ofSeconds(1));
        settings.put(GraphDatabaseInternalSettings.netty_server_shutdown_quiet_period, 0);
        settings.put(GraphDatabaseInternalSettings.netty_server_shutdown_timeout, Duration.ofSeconds(2));
        Config config = Config.newBuilder()
                .set(GraphDatabaseSettings.neo4j_home, data)
                .set(settings)
                .build();

        Files.createDirectories(data);
        if (!Files.exists(data.resolve("databases").resolve("system"))) {
            setInitialPassword(config, password);
        }

        DatabaseManagementService dbms = new DatabaseManagementServiceBuilder(data)
                .setConfig(settings)
                .build();
        CountDownLatch stopped = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            System.err.println("neo4j: stopping");
            dbms.shutdown();
            stopped.countDown();
        }, "neo4j-shutdown"));
        long millis = (System.nanoTime() - started) / 1_000_000;
        System.err.printf(
                "neo4j: ready in %d ms: Bolt on %s, data %s, databases %s%n",
                millis, bolt, data, dbms.listDatabases());
        stopped.await();
    }

    /** The password of NEO4J_AUTH ({@code neo4j/<password>}); anything else is refused. */
    static String password(String auth) {
        if (auth == null || auth.isEmpty()) {
            throw new IllegalArgumentException("NEO4J_AUTH is not set: give neo4j/<password> (auth stays on)");
        }
        if (auth.equals("none")) {
            throw new IllegalArgumentException("NEO4J_AUTH=none is refused: this server always needs a password");
        }
        int slash = auth.indexOf('/');
        if (slash < 0 || !auth.substring(0, slash).equals(USER)) {
            throw new IllegalArgumentException("NEO4J_AUTH must be neo4j/<password> (the user is always neo4j)");
        }
        String password = auth.substring(slash + 1);
        if (password.codePointCount(0, password.length()) < MIN_PASSWORD_LENGTH) {
            throw new IllegalArgumentException(
                    "NEO4J_AUTH: the password must have at least " + MIN_PASSWORD_LENGTH + " characters");
        }
        return password;
    }

    /** {@code host:port} or {@code :port} (all addresses), as Neo4j's listen_address settings take it. */
    static SocketAddress listenAddress(String text) {
        int colon = text.lastIndexOf(':');
        String host = colon > 0 ? text.substring(0, colon) : "0.0.0.0";
        try {
            int port = Integer.parseInt(text.substring(colon + 1));
            if (port > 0 && port < 65536) {
                return new SocketAddress(host, port);
            }
        } catch (NumberFormatException ignored) {
            // the message below says it
        }
        throw new IllegalArgumentException(BOLT_ADDRESS + " must be [host]:port, not " + text);
    }

    /** What neo4j-admin's set-initial-password writes: the system database takes it on its first start. */
    private static void setInitialPassword(Config config, String password) throws Exception {
        Path file = CommunitySecurityModule.getInitialUserRepositoryFile(config);
        try (FileSystemAbstraction fs = new DefaultFileSystemAbstraction()) {
            fs.deleteFile(file);
            fs.mkdirs(file.getParent());
            FileUserRepository users =
                    new FileUserRepository(fs, file, NullLogProvider.getInstance(), EmptyMemoryTracker.INSTANCE);
            users.start();
            SystemGraphCredential credential = SystemGraphCredential.createCredentialForPassword(
                    password.getBytes(java.nio.charset.StandardCharsets.UTF_8), new SecureHasher());
            users.create(new User(USER, null, credential, false, false));
            users.shutdown();
        }
    }

    private static String env(String name, String fallback) {
        String value = System.getenv(name);
        return value == null || value.isBlank() ? fallback : value.trim();
    }
}
