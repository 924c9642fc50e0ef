// Readiness probe used by deploy/kafka.sh: asks the broker for cluster
// metadata with the Kafka AdminClient and exits 0 only if it answered.
//
// Run in Java's single-file source mode against the cached broker jars:
//   java -cp '<cache>/libs/*' deploy/kafka/KafkaProbe.java 127.0.0.1:9092 10000
import java.util.Properties;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.DescribeClusterOptions;
import org.apache.kafka.clients.admin.DescribeClusterResult;

public class KafkaProbe {
    public static void main(String[] args) {
        if (args.length != 2) {
            System.err.println("usage: KafkaProbe <bootstrap> <timeout-ms>");
            System.exit(2);
        }
        int timeoutMs = Integer.parseInt(args[1]);
        Properties props = new Properties();
        props.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
        props.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, timeoutMs);
        props.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, timeoutMs);
        props.put(AdminClientConfig.CLIENT_ID_CONFIG, "crm-deploy-probe");
        try (Admin admin = Admin.create(props)) {
            DescribeClusterResult cluster =
                admin.describeCluster(new DescribeClusterOptions().timeoutMs(timeoutMs));
            String clusterId = cluster.clusterId().get();
            int nodes = cluster.nodes().get().size();
            if (nodes < 1) {
                System.err.println("broker answered but reported no live nodes");
                System.exit(1);
            }
            System.out.println("cluster " + clusterId + ", " + nodes + " broker(s)");
        } catch (Exception e) {
            Throwable cause = e.getCause() != null ? e.getCause() : e;
            System.err.println("metadata request failed: " + cause);
            System.exit(1);
        }
    }
}
