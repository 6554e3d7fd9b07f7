import de.bwaldvogel.mongo.MongoBackend;
import de.bwaldvogel.mongo.MongoDatabase;
import de.bwaldvogel.mongo.MongoServer;
import de.bwaldvogel.mongo.MongoVersion;
import de.bwaldvogel.mongo.MongoCollection;
import de.bwaldvogel.mongo.backend.CollectionOptions;
import de.bwaldvogel.mongo.backend.DocumentWithPosition;
import de.bwaldvogel.mongo.backend.EmptyIndex;
import de.bwaldvogel.mongo.backend.Index;
import de.bwaldvogel.mongo.backend.IndexKey;
import de.bwaldvogel.mongo.backend.h2.H2Backend;
import de.bwaldvogel.mongo.backend.h2.H2Collection;
import de.bwaldvogel.mongo.backend.h2.H2Database;
import de.bwaldvogel.mongo.backend.memory.MemoryBackend;
import de.bwaldvogel.mongo.bson.Document;
import java.util.List;
import java.util.stream.Stream;
import org.h2.mvstore.MVMap;

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

  /** True while the stored databases are being opened, before we accept connections. */
  private static volatile boolean opening;

  /**
   * Opening a stored database, the library fills every index that holds no entry by reading each document of its
   * collection (twice): the non-unique ones, which it does not keep at all (an empty placeholder), and the sparse unique
   * ones no document has a value for yet (users' Telegram and WhatsApp ids). Each read goes through Java
   * serialization: with 100k stored users a start took minutes. The stored indexes were kept up to date with every
   * write, so on opening they are taken as they are; an index created later is still filled as the library does.
   */
  static final class H2BackendOpeningFast extends H2Backend {
    H2BackendOpeningFast(String file) {
      super(file);
    }

    @Override
    protected MongoDatabase openOrCreateDatabase(String databaseName) {
      return new H2Database(databaseName, getMvStore(), getCursorRegistry()) {
        @Override
        protected MongoCollection<Object> openOrCreateCollection(String collectionName, CollectionOptions options) {
          String namespace = getFullCollectionNamespace(collectionName);
          MVMap<Object, Document> data = getMvStore().openMap("databases." + namespace);
          MVMap<String, Object> meta = getMvStore().openMap("meta." + namespace);
          return new H2Collection(this, collectionName, options, data, meta, getCursorRegistry()) {
            @Override
            protected Stream<DocumentWithPosition<Object>> streamAllDocumentsWithPosition() {
              return opening ? Stream.empty() : super.streamAllDocumentsWithPosition();
            }
          };
        }

        // A non-unique index keeps nothing here: no reason to read the collection to fill it, ever.
        @Override
        protected Index<Object> openOrCreateSecondaryIndex(String collectionName, String indexName, List<IndexKey> keys, boolean sparse) {
          return new EmptyIndex<>(indexName, keys) {
            @Override
            public boolean isEmpty() {
              return false;
            }
          };
        }
      };
    }
  }

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
    opening = true;
    MongoBackend backend = (file == null ? new MemoryBackend() : new H2BackendOpeningFast(file)).version(ANNOUNCED);
    opening = false;
    MongoServer server = new MongoServer(backend);
    server.bind("127.0.0.1", port);
    // SIGTERM: commit first, so nothing written is lost even if closing the file (which compacts it, seconds with 100k
    // stored users) is cut short by the SIGKILL that follows after 5 s; then close it.
    Runtime.getRuntime().addShutdownHook(new Thread(() -> {
      if (backend instanceof H2Backend h2) h2.commit();
      server.shutdown();
    }));
    System.out.println("listening " + server.getLocalAddress().getPort());
    System.out.flush();
    // We die with our parent: it holds our stdin open, and end of file means it is gone (even after kill -9).
    while (System.in.read() != -1) { }
    System.exit(0);
  }
}
