import de.bwaldvogel.mongo.MongoBackend;
import de.bwaldvogel.mongo.MongoServer;
import de.bwaldvogel.mongo.MongoVersion;
import de.bwaldvogel.mongo.backend.h2.H2Backend;
import de.bwaldvogel.mongo.backend.memory.MemoryBackend;
import java.util.List;

/**
 * mongo-java-server as Chatgate's embedded engine: a MongoDB-wire server on loopback, its data in one H2 file
 * (or in memory without --file). Started by src/db/embedded.ts; prints "listening PORT" once it accepts connections.
 */
public final class ChatgateMongoServer {
  /**
   * The library's newest built-in version (MONGO_5_0) announces wire version 8, and the Node driver 7 refuses
   * servers below 9: we announce 6.0 (wire 17), which is what the commands we use behave like here.
   */
  private static final MongoVersion ANNOUNCED = new MongoVersion() {
    @Override public List<Integer> getVersionArray() { return List.of(6, 0, 0); }
    @Override public int getWireVersion() { return 17; }
  };

  public static void main(String[] args) throws Exception {
    int port = 0;
    String file = null;
    for (int i = 0; i < args.length; i++) {
      switch (args[i]) {
        case "--port": port = Integer.parseInt(args[++i]); break;
        case "--file": file = args[++i]; break;
        default: throw new IllegalArgumentException("unknown argument " + args[i]);
      }
    }
    MongoBackend backend = (file == null ? new MemoryBackend() : new H2Backend(file)).version(ANNOUNCED);
    MongoServer server = new MongoServer(backend);
    server.bind("127.0.0.1", port);
    // SIGTERM: close the H2 file cleanly, so nothing written is lost.
    Runtime.getRuntime().addShutdownHook(new Thread(server::shutdown));
    System.out.println("listening " + server.getLocalAddress().getPort());
    System.out.flush();
    // We die with our parent: it holds our stdin open, and end of file means it is gone (even after kill -9).
    while (System.in.read() != -1) { }
    System.exit(0);
  }
}
