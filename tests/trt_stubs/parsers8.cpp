// TensorRT 8.x bindings also link the UFF and Caffe parsers (libnvparsers.so.8); these stand-ins let them load.
namespace nvuffparser {
enum class FieldType : int {};
class IUffParser;
IUffParser *createUffParser() { return nullptr; }
struct FieldMap { FieldMap(const char *, const void *, FieldType, int); };
FieldMap::FieldMap(const char *, const void *, FieldType, int) {}
}
namespace nvcaffeparser1 {
class ICaffeParser;
ICaffeParser *createCaffeParser() { return nullptr; }
void shutdownProtobufLibrary() {}
}
