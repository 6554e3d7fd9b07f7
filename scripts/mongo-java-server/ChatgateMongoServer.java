import de.bwaldvogel.mongo.MongoBackend;
import de.bwaldvogel.mongo.MongoDatabase;
import de.bwaldvogel.mongo.MongoServer;
import de.bwaldvogel.mongo.MongoVersion;
import de.bwaldvogel.mongo.MongoCollection;
import de.bwaldvogel.mongo.backend.AbstractUniqueIndex;
import de.bwaldvogel.mongo.backend.CollectionOptions;
import de.bwaldvogel.mongo.backend.DocumentWithPosition;
import de.bwaldvogel.mongo.backend.EmptyIndex;
import de.bwaldvogel.mongo.backend.Index;
import de.bwaldvogel.mongo.backend.IndexKey;
import de.bwaldvogel.mongo.backend.KeyValue;
import de.bwaldvogel.mongo.backend.Missing;
import de.bwaldvogel.mongo.backend.ValueComparator;
import de.bwaldvogel.mongo.backend.h2.H2Backend;
import de.bwaldvogel.mongo.backend.h2.H2Collection;
import de.bwaldvogel.mongo.backend.h2.H2Database;
import de.bwaldvogel.mongo.backend.memory.MemoryBackend;
import de.bwaldvogel.mongo.bson.Document;
import java.nio.ByteBuffer;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.stream.Stream;
import org.h2.mvstore.MVMap;
import org.h2.mvstore.MVStore;
import org.h2.mvstore.WriteBuffer;
import org.h2.mvstore.type.BasicDataType;
import org.h2.mvstore.type.ObjectDataType;

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

  /** --library-index-order: unique indexes as the library keeps them, as launchers before KeyOrder wrote files (tests). */
  private static volatile boolean libraryIndexOrder;

  /** True while the stored databases are being opened, before we accept connections. */
  private static volatile boolean opening;

  /**
   * How much changed data H2 holds before it writes a chunk, besides its write every second (autoCommitDelay, 1000 ms,
   * left as it is). Each write serializes every page changed since the last one, whole: with H2's default of 1 MB, a
   * stream of small inserts and updates had the same pages serialized again and again, many times a second (the
   * largest share of the engine's CPU under logins in a JFR profile). With 32 MB the writes come about once a second
   * under load, as when idle; a kill -9 of the engine still loses at most about the last second.
   */
  private static final int COMMIT_BUFFER_KB = 32 * 1024;

  /**
   * Opening a stored database, the library fills every index that holds no entry by reading each document of its
   * collection (twice): the non-unique ones, which it does not keep at all (an empty placeholder), and the sparse unique
   * ones no document has a value for yet (users' Telegram and WhatsApp ids). Each read goes through Java
   * serialization: with 100k stored users a start took minutes. The stored indexes were kept up to date with every
   * write, so on opening they are taken as they are; an index created later is still filled as the library does.
   */
  static final class H2BackendOpeningFast extends H2Backend {
    H2BackendOpeningFast(String file) {
      super(new MVStore.Builder().fileName(file).autoCommitBufferSize(COMMIT_BUFFER_KB).open());
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

        /**
         * The unique indexes (`_id` among them) with their keys in KeyOrder, under a map name of their own: a file
         * written before has its indexes in the library's order, and each is copied over once, on opening.
         */
        @Override
        protected Index<Object> openOrCreateUniqueIndex(String collectionName, String indexName, List<IndexKey> keys, boolean sparse) {
          if (libraryIndexOrder) return super.openOrCreateUniqueIndex(collectionName, indexName, keys, sparse);
          MVStore store = getMvStore();
          String libraryName = libraryIndexName(collectionName, indexName);
          MVMap<KeyValue, Object> map = store.openMap(libraryName + ORDERED_SUFFIX, new MVMap.Builder<KeyValue, Object>().keyType(KeyOrder.INSTANCE));
          if (store.hasMap(libraryName)) {
            // Copied in full, then the old map removed: a copy cut short leaves the old map, and is done again.
            MVMap<KeyValue, Object> old = store.openMap(libraryName);
            // Said before it starts: src/db/embedded.ts logs it, and gives a start that copies more time.
            System.out.println("copying " + old.sizeAsLong() + " keys of unique index " + libraryName + " into the launcher's key order (once)");
            System.out.flush();
            map.clear();
            for (Map.Entry<KeyValue, Object> entry : old.entrySet()) map.put(entry.getKey(), entry.getValue());
            store.removeMap(old);
          }
          return new OrderedUniqueIndex(map, indexName, keys, sparse);
        }

        @Override
        protected void dropIndex(MongoCollection<Object> collection, String indexName) {
          super.dropIndex(collection, indexName);
          String name = libraryIndexName(collection.getCollectionName(), indexName) + ORDERED_SUFFIX;
          if (getMvStore().hasMap(name)) getMvStore().removeMap(name);
        }

        private String libraryIndexName(String collectionName, String indexName) {
          return getFullCollectionNamespace(collectionName) + "._index_" + indexName;
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

  private static final String ORDERED_SUFFIX = ".ordered";

  /**
   * The order of a unique index's keys. The library's maps use H2's default key type, which compares keys of a class it
   * does not know (the library's KeyValue) by Java-serializing both, at every step of every lookup's binary search:
   * in a CPU profile of the engine under logins, about a sixth of its time. This one compares the values themselves
   * with the library's own comparator; keys are still stored serialized, as before.
   */
  static final class KeyOrder extends BasicDataType<KeyValue> {
    static final KeyOrder INSTANCE = new KeyOrder();
    private static final ObjectDataType SERIALIZED = new ObjectDataType();
    private static final ValueComparator VALUES = ValueComparator.asc();

    @Override
    public int compare(KeyValue a, KeyValue b) {
      if (a == b) return 0;
      int shared = Math.min(a.size(), b.size());
      for (int i = 0; i < shared; i++) {
        Object x = a.get(i);
        Object y = b.get(i);
        if (Objects.equals(x, y)) continue;
        int order = VALUES.compare(x, y);
        if (order != 0) return order;
        // Alike to the comparator but not equal (say 1 and 1.0, which the library keeps apart): still an order, as a
        // map needs one, consistent with KeyValue.equals.
        order = String.valueOf(x == null ? null : x.getClass().getName()).compareTo(String.valueOf(y == null ? null : y.getClass().getName()));
        if (order == 0) order = SERIALIZED.compare(x, y);
        if (order != 0) return order;
      }
      return Integer.compare(a.size(), b.size());
    }

    @Override
    public int getMemory(KeyValue key) {
      return 48 + 40 * key.size();
    }

    @Override
    public void write(WriteBuffer buffer, KeyValue key) {
      SERIALIZED.write(buffer, key);
    }

    @Override
    public KeyValue read(ByteBuffer buffer) {
      return (KeyValue) SERIALIZED.read(buffer);
    }

    @Override
    public KeyValue[] createStorage(int size) {
      return new KeyValue[size];
    }
  }

  /** The library's H2 unique index (whose constructor is not public), over a map in KeyOrder. */
  static final class OrderedUniqueIndex extends AbstractUniqueIndex<Object> {
    private final MVMap<KeyValue, Object> map;

    OrderedUniqueIndex(MVMap<KeyValue, Object> map, String name, List<IndexKey> keys, boolean sparse) {
      super(name, keys, sparse);
      this.map = map;
    }

    @Override
    protected Object removeDocument(KeyValue key) {
      return map.remove(key);
    }

    @Override
    protected boolean putKeyPosition(KeyValue key, Object position) {
      return map.putIfAbsent(key, Missing.ofNullable(position)) == null;
    }

    @Override
    protected Iterable<Map.Entry<KeyValue, Object>> getIterable() {
      return map.entrySet();
    }

    @Override
    protected Object getPosition(KeyValue key) {
      return map.get(key);
    }

    @Override
    public long getCount() {
      return map.sizeAsLong();
    }

    @Override
    public boolean isEmpty() {
      return map.isEmpty();
    }

    @Override
    public long getDataSize() {
      return getCount();
    }
  }

  public static void main(String[] args) throws Exception {
    int port = 0;
    String file = null;
    for (int i = 0; i < args.length; i++) {
      switch (args[i]) {
        case "--port": port = Integer.parseInt(args[++i]); break;
        case "--file": file = args[++i]; break;
        case "--library-index-order": libraryIndexOrder = true; break;
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
